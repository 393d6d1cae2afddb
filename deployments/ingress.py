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
from gateway.routing.router import Routed

_T = TypeVar("_T")


class RouterClient:
    """The `gateway.api.Backend` surface over the router deployment's handle.

    Errors raised in the router replica arrive wrapped in RayTaskError; they are unwrapped so
    the API answers with the router's own GatewayError.
    """

    def __init__(self, handle: DeploymentHandle) -> None:
        self._handle = handle
        self._streams = handle.options(stream=True)

    async def chat(self, request: ChatCompletionRequest) -> Routed[ChatCompletion]:
        return await _unwrapped(self._handle.chat.remote(request))

    def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[Any]:
        return _unwrapped_stream(self._streams.chat_stream.remote(request))

    async def completion(self, request: CompletionRequest) -> Routed[Completion]:
        return await _unwrapped(self._handle.completion.remote(request))

    def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Any]:
        return _unwrapped_stream(self._streams.completion_stream.remote(request))

    async def embeddings(self, request: EmbeddingRequest) -> Routed[EmbeddingResponse]:
        return await _unwrapped(self._handle.embeddings.remote(request))

    async def ready(self) -> bool:
        try:
            return bool(await self._handle.ready.remote())
        except RayTaskError:
            return False


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
        return create_api(self._config, self._backend)
