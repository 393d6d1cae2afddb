"""The gateway's HTTP API as a FastAPI app, independent of Ray: `create_api` composes the
pipeline's stages and the routes over them, and nothing else.

The Serve ingress deployment builds it over handles to the router and cache deployments;
tests build it over an in-process router and cache.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.a2a.tasks import TaskOwners
from gateway.accounting.budgets import BudgetLedger
from gateway.accounting.meter import Meter
from gateway.accounting.pricing import PriceTable
from gateway.api.a2a_policy import A2APolicy
from gateway.api.a2a_proxy import AgentProxy
from gateway.api.admin import AdminGate
from gateway.api.admin.audit import audit_routes
from gateway.api.admin.cache import cache_routes
from gateway.api.admin.keys import key_routes
from gateway.api.admin.policy import policy_routes
from gateway.api.admin.routing import routing_routes
from gateway.api.admin.whoami import whoami_routes
from gateway.api.admission import Admission
from gateway.api.backend import Backend, Upstream
from gateway.api.caching import CacheBackend, ResponseCache
from gateway.api.embedding import Embed, RequestEmbedding
from gateway.api.errors import install_error_handlers, internal_error
from gateway.api.input_policy import InputPolicy
from gateway.api.judging import AnswerJudge
from gateway.api.metrics import RequestMetrics
from gateway.api.near_cache import NearCache
from gateway.api.openapi import openapi_routes
from gateway.api.output_policy import OutputPolicy
from gateway.api.pipeline import Pipeline
from gateway.api.precaching import Precaching
from gateway.api.response import Responder
from gateway.api.routes.a2a import a2a_routes
from gateway.api.routes.anthropic import anthropic_routes
from gateway.api.routes.health import health_routes
from gateway.api.routes.openai import openai_routes
from gateway.api.routes.responses import responses_routes
from gateway.audit import AuditWriter
from gateway.cache.browse import CacheBrowser
from gateway.config import GatewayConfig
from gateway.console import ConsoleSso, console_routes, sso_routes
from gateway.haproxy import ClientAddress
from gateway.identity.service import Identity
from gateway.limits.limiter import RateLimiter
from gateway.mcp.service import McpGateway
from gateway.observability.metrics import MetricFactory, Recorder
from gateway.policy.engine import PolicyEngine
from gateway.policy.redaction import redact_pii
from gateway.providers.keys import KeyedConfig, ProviderKeyStore
from gateway.responses.store import ResponseStore
from gateway.routing.board import StatusBoard
from gateway.storage import Database


def create_api(
    config: GatewayConfig,
    backend: Backend,
    *,
    replica: str | None = None,
    cache: CacheBackend | None = None,
    embed: Embed | None = None,
    metrics: MetricFactory | None = None,
    near: NearCache | None = None,
) -> FastAPI:
    """The FastAPI app for `config`, answering through `backend`; `replica` names this
    instance in an `x-raygate-replica` header (which ingress replica answered); `cache` is
    the embedder + cache replicas (none: no cache); `embed` the embedder the policy uses
    (default: the cache's; none: embedding-based rules cannot run); `metrics` makes the
    Prometheus instruments (default: a `Recorder` in this process, at `app.state.metrics`);
    `near` the ingress replica's near cache of exact hits in front of `cache`.

    `app.state.pipeline` is the composed request path (its `aclose()` runs at shutdown).
    """
    needs_db = (
        config.auth.key_secret
        or config.audit.enabled
        or config.budgets.any_limits()
        or config.storage.data_key_set()  # provider keys set at run time
    )
    db = Database(config.storage.url) if needs_db else None
    provider_keys = (
        ProviderKeyStore.from_config(config, db)
        if db is not None and config.storage.data_key_set()
        else None
    )
    keyed = KeyedConfig(config, provider_keys)
    identity = Identity.from_config(config, db)
    meter = _meter(config, db)
    metrics = metrics or Recorder()
    audit = _audit_writer(config, db, metrics)
    engine = PolicyEngine(config.policy) if config.policy.enabled else None
    if embed is None and cache is not None:
        embed = cache.embed
    embedding = RequestEmbedding(embed, timeout_s=config.cache.lookup_timeout_s)
    upstream = Upstream(backend)
    judge = (
        AnswerJudge(config.cache.judge, upstream, meter.prices, audit)
        if config.cache.judge.model is not None
        else None
    )
    response_cache = (
        ResponseCache(config.cache, cache, prices=meter.prices, near=near, judge=judge)
        if cache is not None
        else None
    )
    pipeline = Pipeline(
        Admission(identity, keyed, meter, limits=config.limits),
        InputPolicy(engine, embedding),
        response_cache,
        upstream,
        OutputPolicy(engine),
        Responder(
            meter,
            audit,
            RequestMetrics(config, metrics),
            replica=replica,
            client_address=ClientAddress.from_environment(),
        ),
        precaching=Precaching(response_cache, upstream, meter.prices, audit)
        if response_cache is not None
        else None,
    )

    app = FastAPI(title="raygate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.pipeline = pipeline
    app.state.metrics = metrics
    app.router.on_shutdown.append(pipeline.aclose)
    install_error_handlers(app)
    app.add_middleware(_ExchangePerRequest, responder=pipeline.responder)
    app.include_router(openai_routes(pipeline))
    app.include_router(anthropic_routes(pipeline))
    app.include_router(responses_routes(pipeline, ResponseStore.for_gateway(config, db)))
    mcp = McpGateway.from_config(
        config, pipeline.admission, pipeline.responder, pipeline.input_policy, meter, db
    )
    app.state.mcp = mcp  # None without virtual servers
    if mcp is not None:
        app.router.routes.append(mcp.route())
        app.router.on_shutdown.append(mcp.aclose)
    app.include_router(health_routes(backend, cache))
    agents = AgentProxy(
        config.a2a,
        pipeline.admission,
        meter,
        A2APolicy(engine, pipeline.input_policy),
        pipeline.responder,
        TaskOwners(db or Database(config.storage.url), ttl_s=config.a2a.task_ttl_s),
        limits=config.limits,
    )
    app.router.on_shutdown.append(agents.aclose)
    app.include_router(a2a_routes(agents))
    admin = AdminGate(identity)
    app.include_router(whoami_routes(admin))
    board = StatusBoard(db if db is not None else Database(config.storage.url))
    app.include_router(routing_routes(admin, backend, board, keyed, provider_keys))
    app.include_router(key_routes(admin, identity))
    app.include_router(policy_routes(admin, engine, embedding.embed, identity))
    if audit is not None:
        app.include_router(audit_routes(admin, audit.store))
    if cache is not None:
        browser = CacheBrowser.for_gateway(config, db) if db is not None else None
        app.include_router(cache_routes(admin, cache, browser))
    app.include_router(openapi_routes(app, admin))
    sso = ConsoleSso.from_config(config, identity.authenticator)
    if sso is not None:
        app.router.on_shutdown.append(sso.aclose)
    app.include_router(sso_routes(sso))  # before the console's files, which match any path
    app.include_router(console_routes())
    return app


class _ExchangePerRequest:
    """The middleware that opens each request's exchange and closes it as the response
    starts, error responses included (see `Responder`). Plain ASGI: the response's first
    message gets the exchange's headers on its way out, and nothing else is copied or run
    in another task (Starlette's `BaseHTTPMiddleware` costs both on every request)."""

    def __init__(self, app: ASGIApp, responder: Responder) -> None:
        self._app = app
        self._responder = responder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request = Request(scope, receive)
        exchange = self._responder.open(request)
        started = False

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                matched = scope.get("route")  # the route the app matched, if any
                # A route that names itself keeps it (MCP's plain route is not in the scope).
                exchange.template = exchange.template or getattr(matched, "path", None)
                headers = MutableHeaders(scope=message)
                await self._responder.close(exchange, message["status"], headers)
            await send(message)

        try:
            await self._app(scope, receive, send_closing)
        except Exception as exc:
            if started:  # the response is on its way: the server ends it
                raise
            # A bug: still one 500 in the error shape, and audited.
            await internal_error(request, exc)(scope, receive, send_closing)


def _audit_writer(
    config: GatewayConfig, db: Database | None, metrics: MetricFactory
) -> AuditWriter | None:
    if not config.audit.enabled or db is None:
        return None
    return AuditWriter.for_gateway(db, config, redactor=redact_pii, metrics=metrics)


def _meter(config: GatewayConfig, db: Database | None) -> Meter:
    presets = {name: p.preset for name, p in config.providers.items()}
    prices = PriceTable.from_config(config.pricing, provider_presets=presets)
    limits = config.rate_limits
    limited = limits.model_dump(exclude={"store"}, exclude_defaults=True)
    limiter = RateLimiter.from_config(limits) if limited else None
    budgeted = db is not None and config.budgets.any_limits()
    ledger = BudgetLedger(db, config.budgets) if budgeted and db is not None else None
    return Meter(prices, limiter, ledger)
