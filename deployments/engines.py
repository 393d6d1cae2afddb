"""`ServeEngines`: the router's transport to the local models, over their DeploymentHandles.

It holds back calls to a model with no running replica (scaled to zero, or its replicas
starting or restarting), which Serve would otherwise queue until one is up. Which deployments
have a running replica comes from the Serve controller, polled in the background every
`poll_s`. For a deployment with none, a single wake-up call is sent, so that a deployment
scaled to zero scales up (Serve counts queued requests), and the request falls over at once;
a request for a model given a wait (`waits`: one that scales to zero) is sent all the same
and waits in Serve's queue, the first request after a scale to zero is answered. A call
waiting when the last replica goes (Serve re-queues a request whose replica died before it
started), or longer than its model's wait with none running, is withdrawn at the next poll
rather than left waiting for a new replica.

Failures mean what they mean on every other hop (`deployments.handles.failure`), and as on
the router and cache hops a call whose replica died under it is sent again (a stream only
before its first chunk): the engine's work is redone, nothing was spent upstream. The resent
call goes to another replica, or, for a model that waits, waits for Serve's replacement.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ray.serve.context import _get_global_client
from ray.serve.handle import DeploymentHandle

from deployments.handles import resent, started
from gateway.errors import UpstreamRejected, UpstreamUnavailable
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
)

_T = TypeVar("_T")

log = logging.getLogger(__name__)

# How long a wake-up call may wait for a replica to start (a large model loads for minutes).
_WAKE_TIMEOUT_S = 900.0


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
        return await self._answer(lambda h: h.chat.remote(request), request.model)

    def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        return self._chunks(lambda h: h.chat_stream.remote(request), request.model)

    async def completion(self, request: CompletionRequest) -> Completion:
        return await self._answer(lambda h: h.completion.remote(request), request.model)

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

    async def _answer(self, send: Callable[[DeploymentHandle], Any], model: str) -> Any:
        """A whole answer, sent again if its replica dies under it, unless the model loses
        its last replica while it is awaited."""

        async def once() -> Any:
            response = send(await self._handle(model))
            try:
                return await self._unless_gone(response, model, grace_s=self._waits.get(model, 0.0))
            except BaseException:
                response.cancel()  # withdrawn, or the client went away; a no-op once answered
                raise

        return await resent(once, _where(model))

    async def _chunks(
        self, send: Callable[[DeploymentHandle], Any], model: str
    ) -> AsyncIterator[Any]:
        """The chunks of a stream, sent again if its replica dies before the first. Only the
        first waits on the controller's count: once a chunk has come the stream has a replica,
        whose death ends it with an error, and the count lags behind a replacement starting."""
        handle = await self._handle(model, stream=True)
        grace_s = self._waits.get(model, 0.0)
        chunks = await started(
            lambda: send(handle),
            _where(model),
            first_of=lambda items: self._unless_gone(anext(items), model, grace_s=grace_s),
        )
        async with contextlib.aclosing(chunks):  # closing it cancels the call in the engine
            async for chunk in chunks:
                yield chunk

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
        app = _serve_details().get("applications", {}).get(self._app, {})
        deployments = app.get("deployments", {})
        running = {}
        for model, deployment in self._deployments.items():
            found = deployments.get(deployment)
            if found is not None:
                states = [replica.get("state") for replica in found.get("replicas", ())]
                running[model] = states.count("RUNNING")
        return running


def _serve_details() -> dict[str, Any]:
    """The Serve controller's instance details, as the JSON-ready dict it sends.

    `serve.status()` reads the same dict and then validates it into pydantic models, which
    re-serialises every deployment's request router with cloudpickle: ~17 ms of the caller's
    CPU per call against ~0.5 ms here, and most of it holding the GIL, once a second in an
    ingress that serves local models. Ray has no public call for the dict itself; the
    cluster tests (tests/cluster/test_local_model.py) read replica counts through this one.
    """
    client = _get_global_client(raise_if_no_controller_running=False)
    return client.get_serve_details() if client is not None else {}


def _retrieved(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _where(model: str) -> str:
    return f"local model {model!r}"
