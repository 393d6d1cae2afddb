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

`ServeEngines`, the router's transport to local models, also holds back calls to a model
with no running replica (scaled to zero, or its replicas starting or restarting), which Serve
would otherwise queue until one is up. Which deployments have a running replica comes from
the Serve controller, polled in the background every `poll_s`. For a deployment with none, a
single wake-up call is sent, so that a deployment scaled to zero scales up (Serve counts
queued requests), and the request falls over at once; a request for a model given a wait
(`waits`: one that scales to zero) is sent all the same and waits in Serve's queue, the first
request after a scale to zero is answered. A call waiting when the last replica goes (Serve
re-queues a request whose replica died before it started), or longer than its model's wait
with none running, is withdrawn at the next poll rather than left waiting for a new replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import numpy as np
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError
from ray.serve.handle import DeploymentHandle

from gateway.cache.lookup import (
    CacheQuery,
    CacheResult,
    Exploration,
    NewEntry,
    Observation,
    Selector,
)
from gateway.cache.precache import FollowUp
from gateway.cache.request import CacheRequest
from gateway.errors import GatewayError, UpstreamError, UpstreamRejected, UpstreamUnavailable
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

# How long a wake-up call may wait for a replica to start (a large model loads for minutes).
_WAKE_TIMEOUT_S = 900.0
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


async def started(send: Callable[[], Any], where: str) -> AsyncGenerator[Any, None]:
    """The items of the streaming call that `send` makes (as `stream`), sent again when its
    replica is lost before the first item; returns once the first item is in hand."""
    for attempt in range(1, ATTEMPTS + 1):
        items = send()
        try:
            first = await anext(items)
        except StopAsyncIteration:
            return stream(items, where, first=())
        except Exception as exc:
            items.cancel()
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
        self, exploration: Exploration, fresh_answer: str, *, tokens: int | None = None
    ) -> Observation:
        call = self._handle.observe.remote(exploration, fresh_answer, tokens=tokens)
        return await answer(call, self._WHERE)

    async def follow_ups(self, request: CacheRequest) -> list[FollowUp]:
        return await resent(lambda: self._handle.follow_ups.remote(request), self._WHERE)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await resent(lambda: self._handle.embed.remote(texts), self._WHERE)

    async def invalidate(self, selector: Selector) -> int:
        return await answer(self._handle.invalidate.remote(selector), self._WHERE)

    async def stats(self) -> dict[str, Any]:
        """One cache replica's counters (the one the handle picked)."""
        return await answer(self._handle.stats.remote(), self._WHERE)


class ServeEngines:
    """`gateway.providers.local.LocalEngines` over the local models' DeploymentHandles.

    `app` is the Serve application the deployments belong to; `deployments` maps each model
    to its deployment name there (for the controller's replica counts).
    """

    def __init__(
        self,
        handles: Mapping[str, DeploymentHandle],
        *,
        app: str,
        deployments: Mapping[str, str],
        waits: Mapping[str, float] | None = None,
        poll_s: float = 1.0,
    ) -> None:
        self._handles = dict(handles)
        self._streams = {name: h.options(stream=True) for name, h in handles.items()}
        self._app = app
        self._deployments = dict(deployments)
        self._waits = dict(waits or {})
        self._poll_s = poll_s
        self._running: dict[str, int] = {}  # model -> replicas RUNNING; unknown = assume some
        self._poller: asyncio.Task[None] | None = None
        self._waking: dict[str, asyncio.Task[None]] = {}
        self._gone: dict[str, asyncio.Event] = {}  # set while a model has no running replica
        self._seen_running: set[str] = set()  # models that have had a running replica

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        handle = await self._handle(request.model)
        return await self._answer(handle.chat.remote(request), request.model)

    def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        return self._chunks(lambda h: h.chat_stream.remote(request), request.model)

    async def completion(self, request: CompletionRequest) -> Completion:
        handle = await self._handle(request.model)
        return await self._answer(handle.completion.remote(request), request.model)

    def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Completion]:
        return self._chunks(lambda h: h.completion_stream.remote(request), request.model)

    async def running(self) -> dict[str, int]:
        """Each model's running replicas, from the Serve controller now."""
        self._running = await asyncio.to_thread(self._replicas_running)
        self._seen_running.update(model for model, n in self._running.items() if n)
        return self._running

    async def aclose(self) -> None:
        """Stop polling the controller and any wake-up calls."""
        tasks = [t for t in (self._poller, *self._waking.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _handle(self, model: str, *, stream: bool = False) -> DeploymentHandle:
        handles = self._streams if stream else self._handles
        handle = handles.get(model)
        if handle is None:
            raise UpstreamRejected(f"no local model {model!r} is deployed")
        if self._poller is None:
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name="local:poll")
        if self._running.get(model) == 0 and not self._waits.get(model):
            self._wake(model)
            raise UpstreamUnavailable(
                f"local model {model!r} has no running replica yet (starting, or scaled to zero)",
                headers={"retry-after": "5"},
            )
        # A model that waits: the call itself, queued in Serve, scales it up from zero.
        return handle

    def _wake(self, model: str) -> None:
        """One queued call per model while none runs: Serve scales up for it."""
        if model in self._waking:
            return

        async def wake() -> None:
            try:
                async with asyncio.timeout(_WAKE_TIMEOUT_S):
                    await self._handles[model].check_health.remote()
            except Exception as exc:  # the next request wakes it again
                log.info("waking local model %r: %s", model, type(exc).__name__)
            finally:
                self._waking.pop(model, None)

        self._waking[model] = asyncio.get_running_loop().create_task(wake(), name=f"wake:{model}")

    async def _poll(self) -> None:
        while True:
            try:
                await self.running()
            except Exception as exc:  # the controller restarting: keep the last counts
                log.warning("cannot read Serve's status: %s: %s", type(exc).__name__, exc)
            for model, running in self._running.items():
                gone = self._gone_event(model)
                if running and gone.is_set():
                    log.warning("local model %r has %d running replica(s) again", model, running)
                    gone.clear()
                elif not running and not gone.is_set():
                    log.warning("local model %r has no running replica: falling over", model)
                    gone.set()
            await asyncio.sleep(self._poll_s)

    async def _gone_for(self, model: str, grace_s: float) -> None:
        """Return once `model` has had no running replica after `grace_s` from now."""
        if grace_s:
            await asyncio.sleep(grace_s)  # a deadline: a scale-up from zero may take this long
        await self._gone_event(model).wait()

    def _gone_event(self, model: str) -> asyncio.Event:
        return self._gone.setdefault(model, asyncio.Event())

    async def _answer(self, response: Any, model: str) -> Any:
        """A whole answer, unless the model loses its last replica while it is awaited."""
        try:
            return await self._unless_gone(response, model, grace_s=self._waits.get(model, 0.0))
        except BaseException as exc:
            response.cancel()  # withdrawn, or the client went away; a no-op once answered
            if isinstance(exc, Exception):
                raise failure(exc, _where(model)) from None
            raise

    async def _chunks(
        self, send: Callable[[DeploymentHandle], Any], model: str
    ) -> AsyncIterator[Any]:
        stream = send(await self._handle(model, stream=True))
        grace_s = self._waits.get(model, 0.0)  # until the first chunk
        try:
            while True:
                try:
                    chunk = await self._unless_gone(stream.__anext__(), model, grace_s=grace_s)
                except StopAsyncIteration:
                    return
                grace_s = 0.0
                yield chunk
        except Exception as exc:
            raise failure(exc, _where(model)) from None
        finally:
            stream.cancel()  # a client that went away aborts the request in the engine

    async def _unless_gone(self, call: Awaitable[_T], model: str, *, grace_s: float = 0.0) -> _T:
        """`call`'s result, unless `model` has no running replica for longer than `grace_s`
        (the time a request waits for a model scaled to zero)."""
        task = asyncio.ensure_future(call)
        gone = asyncio.ensure_future(self._gone_for(model, grace_s))
        try:
            await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()
            raise
        finally:
            gone.cancel()
        if task.done():
            return task.result()
        task.cancel()
        task.add_done_callback(_retrieved)  # Serve ends it with RequestCancelledError
        self._wake(model)
        what = "lost its last" if model in self._seen_running else "has no"
        raise UpstreamUnavailable(
            f"local model {model!r} {what} running replica (starting, or scaled to zero)",
            headers={"retry-after": "5"},
        )

    def _replicas_running(self) -> dict[str, int]:
        app = serve.status().applications.get(self._app)
        if app is None:
            return {}
        running = {}
        for model, deployment in self._deployments.items():
            found = app.deployments.get(deployment)
            if found is not None:
                # Keyed by ReplicaState, or by its name once the status went through JSON.
                states = {
                    str(getattr(state, "value", state)): n
                    for state, n in found.replica_states.items()
                }
                running[model] = states.get("RUNNING", 0)
        return running


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _where(model: str) -> str:
    return f"local model {model!r}"
