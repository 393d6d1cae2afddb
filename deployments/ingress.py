"""The ingress deployment: the FastAPI app from `gateway.api`, answering through handles."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from fastapi import FastAPI
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.handle import DeploymentHandle

from gateway.api import create_api
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
    """Serves the gateway's HTTP API; every model call goes to the router deployment."""

    def __init__(self, config: GatewayConfig, router: DeploymentHandle) -> None:
        self._config = config
        self._backend = RouterClient(router)

    def __serve_build_asgi_app__(self) -> FastAPI:
        replica = serve.get_replica_context().replica_id.unique_id
        self._app = create_api(self._config, self._backend, replica=replica)
        return self._app

    async def __del__(self) -> None:
        # Serve's graceful shutdown of this replica: flush the audit trail before it goes.
        await self._app.state.api.aclose()
