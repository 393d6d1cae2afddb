"""The ingress deployment: the FastAPI app from `gateway.api`, answering through handles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import numpy as np
from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle
from ray.util.metrics import Counter

from gateway.api import create_api
from gateway.cache.lookup import CacheQuery, CacheResult, NewEntry, Selector
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.routing.context import RouteContext
from gateway.routing.router import Routed
from gateway.routing.status import RoutingStatus

_T = TypeVar("_T")


class RouterClient:
    """The `gateway.api.Backend` surface over the router deployment's handle.

    Errors raised in the router replica arrive wrapped in RayTaskError; they are unwrapped so
    the API answers with the router's own GatewayError.
    """

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streams = handle.options(stream=True)

    async def chat(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> Routed[ChatCompletion]:
        return await _unwrapped(self._handle.chat.remote(request, context))

    def chat_stream(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> AsyncIterator[Any]:
        return _unwrapped_stream(self._streams.chat_stream.remote(request, context))

    async def completion(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> Routed[Completion]:
        return await _unwrapped(self._handle.completion.remote(request, context))

    def completion_stream(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> AsyncIterator[Any]:
        return _unwrapped_stream(self._streams.completion_stream.remote(request, context))

    async def embeddings(
        self, request: EmbeddingRequest, context: RouteContext | None = None
    ) -> Routed[EmbeddingResponse]:
        return await _unwrapped(self._handle.embeddings.remote(request, context))

    async def ready(self) -> bool:
        try:
            return bool(await self._handle.ready.remote())
        except RayTaskError:
            return False

    async def routing_status(self) -> RoutingStatus:
        """The router replica's `Router.status()` (one replica's view when there are several)."""
        return await _unwrapped(self._handle.status.remote())


class CacheClient:
    """The `gateway.api.caching.CacheBackend` surface over the cache deployment's handle."""

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def lookup(self, query: CacheQuery) -> CacheResult:
        return await _unwrapped(self._handle.lookup.remote(query))

    async def insert(self, entry: NewEntry) -> int:
        return await _unwrapped(self._handle.insert.remote(entry))

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await _unwrapped(self._handle.embed.remote(texts))

    async def invalidate(self, selector: Selector) -> int:
        return await _unwrapped(self._handle.invalidate.remote(selector))

    async def stats(self) -> dict[str, Any]:
        """One cache replica's counters (the one the handle picked)."""
        return await _unwrapped(self._handle.stats.remote())


class _CacheCounters:
    """Prometheus counters of what the cache answered and what that saved, per model:
    `raygate_cache_requests{model, phase}` and `raygate_cache_cost_avoided_usd{model}`."""

    def __init__(self) -> None:
        self._requests = Counter(
            "raygate_cache_requests",
            description="Chat requests by cache outcome: exact, normalized, semantic, miss, bypass",
            tag_keys=("model", "phase"),
        )
        self._avoided = Counter(
            "raygate_cache_cost_avoided_usd",
            description="List-price USD that cache hits saved, at the original target's prices.",
            tag_keys=("model",),
        )

    def __call__(self, model: str, phase: str, cost_avoided_usd: float | None) -> None:
        self._requests.inc(tags={"model": model, "phase": phase})
        if cost_avoided_usd:
            self._avoided.inc(cost_avoided_usd, tags={"model": model})


async def _unwrapped(call: Awaitable[_T]) -> _T:
    try:
        return await call
    except RayTaskError as exc:
        raise _cause(exc) from None


async def _unwrapped_stream(stream: Any) -> AsyncIterator[Any]:
    try:
        async for item in stream:
            yield item
    except RayTaskError as exc:
        raise _cause(exc) from None
    finally:
        # A client that went away cancels the router's generator and so the upstream call.
        stream.cancel()


def _cause(exc: RayTaskError) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, GatewayError) else exc


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """Serves the gateway's HTTP API; model calls go to the router deployment, cache lookups
    and embeddings to the cache deployment (when the cache is in use)."""

    def __init__(
        self, config: GatewayConfig, router: DeploymentHandle, cache: DeploymentHandle | None
    ) -> None:
        self._config = config
        self._backend = RouterClient(router)
        self._cache = CacheClient(cache) if cache is not None else None

    def __serve_build_asgi_app__(self) -> FastAPI:
        replica = serve.get_replica_context().replica_id.unique_id
        self._app = create_api(
            self._config,
            self._backend,
            replica=replica,
            cache=self._cache,
            cache_events=_CacheCounters() if self._cache is not None else None,
        )
        return self._app

    async def __del__(self) -> None:
        # Serve's graceful shutdown of this replica: flush the audit trail before it goes.
        await self._app.state.api.aclose()
