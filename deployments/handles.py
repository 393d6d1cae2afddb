"""Clients of the Serve deployments, and what their failures mean to the gateway.

Every hop through a DeploymentHandle (ingress -> router, ingress -> cache, router -> local
model) goes through `answer` / `resent` / `stream` here, so a failure means the same on each:

- an error the replica raised itself (a `GatewayError`) arrives as it was raised;
- a replica that died under the call, or that Serve could not reach (`RayActorError`), is
  a call sent again, to another replica (Serve's router has struck the lost one off), up to
  `ATTEMPTS` times in all; a stream is sent again only before its first item, and a stream
  cut after it ends with the error (the client sees an error event, never a clean end);
- Serve's own failures, a replica lost on every attempt, a deployment that is gone,
  back-pressure (`max_queued_requests` reached), are a retryable 503 naming the hop, so the
  router falls over (local models) or the client may retry;
- anything else is a 502 naming the hop, never the generic 500 with a traceback.
The local models' client, `ServeEngines`, is in `deployments/engines.py`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, TypeVar

import numpy as np
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from gateway.cache.lookup import (
    CacheQuery,
    CacheResult,
    Exploration,
    NearbyHits,
    NewEntry,
    Observation,
    Selector,
)
from gateway.cache.precache import FollowUp
from gateway.cache.request import CacheRequest
from gateway.errors import GatewayError, UpstreamError, UpstreamUnavailable
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.routing.context import RouteContext
from gateway.routing.routed import Routed, RoutedStream, open_routed
from gateway.routing.status import RoutingStatus

_T = TypeVar("_T")

log = logging.getLogger(__name__)

# Sends of one call whose replica is lost each time (a replica per deployment can die at once).
ATTEMPTS = 3


def failure(exc: Exception, where: str) -> Exception:
    """What a call through a handle that raised `exc` means to the gateway (see above)."""
    if isinstance(exc, RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, GatewayError | BackPressureError | RayActorError):
            exc = cause
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, BackPressureError):
        return UpstreamUnavailable(
            f"{where} is saturated: every replica is busy and its queue is full",
            headers={"retry-after": "1"},
        )
    if isinstance(exc, RayActorError):
        return UpstreamUnavailable(f"{where}: its replica died or is unreachable")
    if isinstance(exc, DeploymentUnavailableError):
        return UpstreamUnavailable(f"{where} is not deployed")
    log.warning("%s failed: %r", where, exc)
    return UpstreamError(f"{where} failed: {type(exc).__name__}")


def replica_lost(exc: BaseException) -> bool:
    """Whether a call failed because its replica died or could not be reached (not because
    the replica raised): the call never finished, so sending it again is what a client would
    do, and Serve's router sends it to another replica."""
    if isinstance(exc, RayTaskError):
        exc = getattr(exc, "cause", exc)
    return isinstance(exc, RayActorError)


async def answer(call: Awaitable[_T], where: str) -> _T:
    """The result of a handle call, its failure mapped by `failure`."""
    try:
        return await call
    except Exception as exc:
        raise failure(exc, where) from None


async def resent(send: Callable[[], Awaitable[_T]], where: str) -> _T:
    """`answer` for a call that `send` makes, sent again when its replica is lost."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return await send()
        except Exception as exc:
            if attempt == ATTEMPTS or not replica_lost(exc):
                raise failure(exc, where) from None
            log.warning("%s: replica lost under a call (%s); sending it again", where, exc)
    raise AssertionError("unreachable")


async def started(
    send: Callable[[], Any],
    where: str,
    *,
    first_of: Callable[[Any], Awaitable[Any]] = anext,
) -> AsyncGenerator[Any, None]:
    """The items of the streaming call that `send` makes (as `stream`), sent again when its
    replica is lost before the first item (taken with `first_of`); returns once the first
    item is in hand."""
    for attempt in range(1, ATTEMPTS + 1):
        items = send()
        try:
            first = await first_of(items)
        except StopAsyncIteration:
            return stream(items, where, first=())
        except BaseException as exc:
            items.cancel()  # lost, failed, or the client went away before the first item
            if not isinstance(exc, Exception):
                raise
            if attempt == ATTEMPTS or not replica_lost(exc):
                raise failure(exc, where) from None
            log.warning("%s: replica lost before a stream began (%s); sending it again", where, exc)
            continue
        return stream(items, where, first=(first,))
    raise AssertionError("unreachable")


async def stream(
    items: Any, where: str, *, first: tuple[Any, ...] = ()
) -> AsyncGenerator[Any, None]:
    """The items of a streaming handle call (after `first`, already taken from it), its
    failure mapped by `failure`; closing it cancels the call in the replica (a client that
    went away stops the upstream call)."""
    try:
        for item in first:
            yield item
        async for item in items:
            yield item
    except Exception as exc:
        raise failure(exc, where) from None
    finally:
        items.cancel()


class RouterClient:
    """`gateway.api.Backend` over the router deployment's handle."""

    _WHERE = "the gateway's router"

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streams = handle.options(stream=True)

    async def chat(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> Routed[ChatCompletion]:
        return await resent(lambda: self._handle.chat.remote(request, context), self._WHERE)

    async def chat_stream(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> RoutedStream[ChatCompletionChunk]:
        items = await started(
            lambda: self._streams.chat_stream.remote(request, context), self._WHERE
        )
        return await open_routed(items)

    async def completion(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> Routed[Completion]:
        return await resent(lambda: self._handle.completion.remote(request, context), self._WHERE)

    async def completion_stream(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> RoutedStream[Completion]:
        items = await started(
            lambda: self._streams.completion_stream.remote(request, context), self._WHERE
        )
        return await open_routed(items)

    async def embeddings(
        self, request: EmbeddingRequest, context: RouteContext | None = None
    ) -> Routed[EmbeddingResponse]:
        return await resent(lambda: self._handle.embeddings.remote(request, context), self._WHERE)

    async def not_ready(self) -> list[str]:
        try:
            return list(await self._handle.not_ready.remote())
        except Exception as exc:
            return [f"{self._WHERE}: {type(exc).__name__}"]

    async def routing_status(self) -> RoutingStatus:
        """The router replica's `Router.status()` (one replica's view when there are several)."""
        return await answer(self._handle.status.remote(), self._WHERE)


class CacheClient:
    """`gateway.api.caching.CacheBackend` over the cache deployment's handle."""

    _WHERE = "the semantic cache"

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle

    async def lookup(self, query: CacheQuery) -> CacheResult:
        return await resent(lambda: self._handle.lookup.remote(query), self._WHERE)

    async def insert(self, entry: NewEntry) -> int:
        return await answer(self._handle.insert.remote(entry), self._WHERE)

    async def observe(
        self,
        exploration: Exploration,
        fresh_answer: str,
        *,
        tokens: int | None = None,
        verdict: bool | None = None,
    ) -> Observation:
        call = self._handle.observe.remote(
            exploration, fresh_answer, tokens=tokens, verdict=verdict
        )
        return await answer(call, self._WHERE)

    async def follow_ups(self, request: CacheRequest) -> list[FollowUp]:
        return await resent(lambda: self._handle.follow_ups.remote(request), self._WHERE)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await resent(lambda: self._handle.embed.remote(texts), self._WHERE)

    async def count_nearby(self, hits: NearbyHits) -> None:
        await answer(self._handle.count_nearby.remote(hits), self._WHERE)

    async def invalidate(self, selector: Selector) -> int:
        return await answer(self._handle.invalidate.remote(selector), self._WHERE)

    async def stats(self) -> dict[str, Any]:
        """One cache replica's counters (the one the handle picked)."""
        return await answer(self._handle.stats.remote(), self._WHERE)
