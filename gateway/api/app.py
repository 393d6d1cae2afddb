"""The gateway's HTTP API as a FastAPI app, independent of Ray.

`create_api(config, backend)` gives the same app to the Serve ingress deployment and to tests
that run the router in-process.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.accounting.budgets import BudgetLedger
from gateway.accounting.meter import Meter
from gateway.accounting.pricing import PriceTable
from gateway.api.admin_audit import add_audit_routes
from gateway.api.admin_cache import add_cache_routes
from gateway.api.admin_keys import add_key_routes
from gateway.api.admin_routing import add_routing_routes
from gateway.api.backend import Backend
from gateway.api.caching import (
    HIT_PHASES,
    CacheBackend,
    CachedAnswer,
    CacheEvents,
    ResponseCache,
)
from gateway.api.chat import chat_completion, hit_headers, openai_chunk_encoder
from gateway.api.errors import install_error_handlers, validated
from gateway.api.exchange import Exchange, prompt_text
from gateway.api.messages import add_messages_route
from gateway.api.policy import (
    add_policy_routes,
    enforce,
    enforce_completion,
    enforce_embeddings,
    filter_answer,
)
from gateway.api.policy_output import filter_completion_stream
from gateway.api.streaming import DONE, open_routed_stream, sse_data, stream_response
from gateway.audit import AuditConfig, AuditStore, AuditWriter, ContentPolicy
from gateway.config import GatewayConfig
from gateway.errors import (
    GatewayError,
    ModelNotFound,
    PayloadTooLarge,
)
from gateway.identity.principal import Principal
from gateway.identity.service import Identity
from gateway.limits.limiter import RateLimiter
from gateway.policy.engine import PolicyEngine
from gateway.policy.redaction import redact_pii
from gateway.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    Model,
    ModelList,
)
from gateway.routing.context import RouteContext
from gateway.routing.router import Route
from gateway.storage import Database

_M = TypeVar("_M", bound=BaseModel)

log = logging.getLogger(__name__)

# Probes, polled every few seconds by load balancers and Kubernetes: not requests of anyone's.
_UNAUDITED = frozenset({"/healthz", "/readyz"})


class GatewayAPI:
    """Request handling shared by every route: auth, body limits, parsing, headers."""

    def __init__(
        self,
        config: GatewayConfig,
        backend: Backend,
        db: Database | None,
        *,
        cache: CacheBackend | None = None,
        cache_events: CacheEvents | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        self.db = db
        self.identity = Identity.from_config(config, db)
        self.models = config.enabled_models()
        self.audit = _audit_writer(config.audit, db)
        self.meter = _meter(config, db)
        self.policy = PolicyEngine(config.policy) if config.policy.enabled else None
        # The embedder behind the cache deployment; the policy engine embeds through it too.
        self.embed = cache.embed if cache is not None else None
        self.cache = (
            ResponseCache(
                config.cache, cache, price_avoided=self._price_avoided, events=cache_events
            )
            if cache is not None
            else None
        )
        self._closed = False

    async def embedding(self, request: Request, text: str) -> np.ndarray | None:
        """The embedding of `text` (the request's redacted last user turn), computed once per
        request and shared by the policy engine and the cache; None without an embedder or
        when it failed (logged: embedding-based checks then did not run)."""
        exchange: Exchange = request.state.exchange
        if exchange.embedding is not None and exchange.embedded_text == text:
            return exchange.embedding
        if self.embed is None:
            return None
        try:
            vectors = await asyncio.wait_for(
                self.embed([text]), timeout=self.config.cache.lookup_timeout_s
            )
        except Exception:
            log.warning("embedding failed; embedding-based checks skip this request", exc_info=True)
            return None
        exchange.embedding, exchange.embedded_text = vectors[0], text
        return vectors[0]

    def _price_avoided(self, answer: CachedAnswer) -> float | None:
        if answer.target is None:
            return None
        return self.meter.prices.cost_avoided(
            answer.target, answer.prompt_tokens, answer.completion_tokens
        )

    async def principal(self, request: Request) -> Principal:
        """The authenticated caller of a model route, kept on the request's exchange."""
        client = request.client.host if request.client else None
        principal = await self.identity.caller(request.headers, client)
        request.state.exchange.principal = principal
        request.state.exchange.grant = self.identity.grant(principal)
        return principal

    async def finish(self, exchange: Exchange) -> None:
        """Hand the request's audit record to the writer (queued; written off the path)."""
        if self.audit is not None:
            await self.audit.record(exchange.record())

    async def aclose(self) -> None:
        """Flush the audit trail and close identity connections (replica shutdown); once."""
        if self._closed:
            return
        self._closed = True
        if self.cache is not None:
            await self.cache.drain()
        await self.meter.aclose()
        if self.audit is not None:
            await self.audit.aclose()
        await self.identity.aclose()

    async def enforce(self, request: Request, body: ChatCompletionRequest) -> ChatCompletionRequest:
        """The caller's input policy on a chat request (see `gateway.api.policy.enforce`)."""
        return await enforce(self, request, body)

    def context(self, request: Request) -> RouteContext:
        """What routing conditions may look at: the authenticated caller's identity."""
        principal = request.state.exchange.principal
        return RouteContext.of(principal) if principal is not None else RouteContext()

    def admin(self, request: Request) -> Principal:
        """The admin, for /admin routes."""
        return self.identity.authenticator.authenticate_admin(request.headers)

    def visible_models(self, principal: Principal) -> list[str]:
        """The aliases this caller may use."""
        grant = self.identity.grant(principal)
        return [alias for alias in self.models if grant.allows(principal, alias)]

    async def parse(self, request: Request, model: type[_M]) -> _M:
        """Authenticate, read the body within the size limit, validate it as `model`, and
        check that the caller may use the model it names."""
        principal = await self.principal(request)
        raw = await self._read_body(request)
        parsed = validated(model, raw)
        name = getattr(parsed, "model", None)
        if isinstance(name, str):
            if name not in self.models:
                raise ModelNotFound(
                    f"The model {name!r} does not exist or you do not have access to it.",
                    param="model",
                )
            exchange: Exchange = request.state.exchange
            exchange.model = name
            exchange.prompt = prompt_text(parsed)
            assert exchange.grant is not None  # resolved with the principal, above
            exchange.grant.check(principal, name)
            targets = [t.label for t in self.models[name].targets]
            exchange.admission = await self.meter.admit(
                principal,
                name,
                targets,
                prompt_tokens=len(exchange.prompt or "") // 4 + 1,
                max_tokens=_max_tokens(parsed),
            )
        return parsed

    async def _read_body(self, request: Request) -> bytes:
        limit = self.config.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
        return b"".join(chunks)

    def headers(self, request: Request, route: Route) -> dict[str, str]:
        """The x-raygate-* headers for an answer that took `route`."""
        elapsed_ms = (time.perf_counter() - request.state.started) * 1000
        return {
            "x-raygate-route": route.header(),
            "x-raygate-overhead-ms": f"{max(elapsed_ms - route.upstream_ms, 0.0):.2f}",
        }

    async def answer(
        self, request: Request, call: Awaitable[Any], wire: Callable[[Any], Any] | None = None
    ) -> JSONResponse:
        """A whole (non-streamed) answer with the gateway's headers."""
        routed = await call
        exchange: Exchange = request.state.exchange
        exchange.route = routed.route
        exchange.note_answer(routed.response)
        headers = self.headers(request, routed.route)
        if exchange.admission is not None:
            exchange.cost_usd = await self.meter.settle(
                exchange.admission, routed.route.target, exchange.usage
            )
            headers.update(exchange.admission.headers)
        if exchange.cost_usd is not None:
            headers["x-raygate-cost-usd"] = f"{exchange.cost_usd:.8f}"
        response = await filter_answer(self, request, routed.response)
        body = wire(response) if wire else response.wire()
        return JSONResponse(body, headers=headers)

    async def stream(
        self,
        request: Request,
        items: AsyncIterator[Any],
        encode: Callable[[Any], bytes | None],
        *,
        on_error: Callable[[GatewayError], bytes] | None = None,
        done: bytes | None = DONE,
    ) -> Response:
        """A streamed answer; headers go out once the first upstream chunk is in."""
        exchange: Exchange = request.state.exchange
        exchange.route = await open_routed_stream(items)

        def noted(item: Any) -> bytes | None:
            exchange.note_chunk(item)
            return encode(item)

        async def finished(error: GatewayError | None) -> None:
            exchange.status = 200  # the status the client got; what went wrong is the code
            exchange.error_code = error.code if error is not None else None
            if exchange.admission is not None and exchange.cache_phase in HIT_PHASES:
                await self.meter.cancel(exchange.admission)  # answered from cache: no spend
                exchange.cost_usd = 0.0
            elif exchange.admission is not None and exchange.route is not None:
                exchange.cost_usd = await self.meter.settle(
                    exchange.admission, exchange.route.target, exchange.usage
                )
            await self.finish(exchange)

        exchange.streaming = True
        headers = self.headers(request, exchange.route)
        if exchange.admission is not None:
            headers.update(exchange.admission.headers)
        if exchange.cache_phase in HIT_PHASES:
            headers.update(hit_headers(exchange))
        return stream_response(
            items,
            encode=noted,
            on_error=on_error or (lambda exc: sse_data(exc.to_body())),
            done=done,
            headers=headers,
            request_id=request.state.request_id,
            on_finish=finished,
        )


def _audit_writer(config: AuditConfig, db: Database | None) -> AuditWriter | None:
    if not config.enabled or db is None:
        return None
    return AuditWriter(
        AuditStore(db),
        max_queue=config.max_queue,
        batch_size=config.batch_size,
        flush_interval_s=config.flush_interval_s,
        content=ContentPolicy(prompt=config.prompt, response=config.response, redactor=redact_pii),
    )


def _meter(config: GatewayConfig, db: Database | None) -> Meter:
    presets = {name: p.preset for name, p in config.providers.items()}
    prices = PriceTable.from_config(config.pricing, provider_presets=presets)
    limits = config.rate_limits
    limited = limits.model_dump(exclude={"store"}, exclude_defaults=True)
    limiter = RateLimiter.from_config(limits) if limited else None
    budgeted = db is not None and config.budgets.any_limits()
    ledger = BudgetLedger(db, config.budgets) if budgeted and db is not None else None
    return Meter(prices, limiter, ledger)


def _max_tokens(body: Any) -> int | None:
    if isinstance(body, EmbeddingRequest):
        return 0
    for name in ("max_completion_tokens", "max_tokens"):
        value = getattr(body, name, None)
        if isinstance(value, int):
            return value
    return None


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the gateway's limit of {limit} bytes.")


def create_api(
    config: GatewayConfig,
    backend: Backend,
    *,
    replica: str | None = None,
    cache: CacheBackend | None = None,
    cache_events: CacheEvents | None = None,
) -> FastAPI:
    """The FastAPI app for `config`, answering through `backend`; `replica` names this
    instance in an `x-raygate-replica` header (which ingress replica answered); `cache` is
    the embedder + cache replicas (none: no cache, no embedding-based policy)."""
    app = FastAPI(title="raygate", docs_url=None, redoc_url=None, openapi_url=None)
    needs_db = config.auth.key_secret or config.audit.enabled or config.budgets.any_limits()
    db = Database(config.storage.url) if needs_db else None
    api = GatewayAPI(config, backend, db, cache=cache, cache_events=cache_events)
    app.state.api = api
    app.router.on_shutdown.append(api.aclose)
    install_error_handlers(app)

    @app.middleware("http")
    async def _request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.started = time.perf_counter()
        request.state.request_id = f"req_{uuid.uuid4().hex}"
        exchange = Exchange(
            request_id=request.state.request_id,
            path=request.url.path,
            client_address=request.client.host if request.client else None,
        )
        request.state.exchange = exchange
        response = await call_next(request)
        response.headers["x-raygate-request-id"] = request.state.request_id
        if replica is not None:
            response.headers["x-raygate-replica"] = replica
        if request.url.path.startswith("/v1/"):
            response.headers["x-raygate-cache"] = exchange.cache_phase or "off"
            if exchange.similarity is not None:
                response.headers["x-raygate-similarity"] = f"{exchange.similarity:.4f}"
            if exchange.cache_replica is not None:
                response.headers["x-raygate-cache-replica"] = exchange.cache_replica
        if not exchange.streaming:
            if exchange.admission is not None:
                await api.meter.cancel(exchange.admission)  # no-op once settled
            if request.url.path not in _UNAUDITED:
                exchange.status = response.status_code
                await api.finish(exchange)
        return response

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await chat_completion(api, request)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = await enforce_completion(api, request, await api.parse(request, CompletionRequest))
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            items = backend.completion_stream(body, api.context(request))
            filtered = filter_completion_stream(api, request, items)
            return await api.stream(request, filtered, openai_chunk_encoder(include_usage))
        return await api.answer(request, backend.completion(body, api.context(request)))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = await enforce_embeddings(api, request, await api.parse(request, EmbeddingRequest))
        return await api.answer(request, backend.embeddings(body, api.context(request)))

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        principal = await api.principal(request)
        models = api.visible_models(principal)
        return JSONResponse(ModelList(data=[Model(id=m) for m in models]).wire())

    @app.get("/v1/models/{model_id:path}")
    async def retrieve_model(request: Request, model_id: str) -> Response:
        principal = await api.principal(request)
        if model_id not in api.visible_models(principal):
            raise ModelNotFound(
                f"The model {model_id!r} does not exist or you do not have access to it.",
                param="model",
            )
        return JSONResponse(Model(id=model_id).wire())

    @app.get("/healthz")
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> Response:
        ready = await backend.ready()
        return JSONResponse(
            {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
        )

    add_routing_routes(app, api)
    add_messages_route(app, api)
    add_policy_routes(app, api)
    add_key_routes(app, api)
    if api.audit is not None:
        add_audit_routes(app, api.admin, api.audit.store)
    if api.cache is not None:
        add_cache_routes(app, api.admin, api.cache.backend)
    return app
