"""The router deployment: holds a `gateway.routing.Router` and its provider pools."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ray import serve

from gateway.config import GatewayConfig
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.routing.router import Route, Routed, Router


@serve.deployment(name="Router")
class RouterDeployment:
    """Calls providers for the ingress; one pooled HTTP client per provider per replica."""

    def __init__(self, config: GatewayConfig) -> None:
        self._router = Router(config)

    async def chat(self, request: ChatCompletionRequest) -> Routed[ChatCompletion]:
        return await self._router.chat(request)

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[Route | ChatCompletionChunk]:
        async for item in self._router.chat_stream(request):
            yield item

    async def completion(self, request: CompletionRequest) -> Routed[Completion]:
        return await self._router.completion(request)

    async def completion_stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[Route | Completion]:
        async for item in self._router.completion_stream(request):
            yield item

    async def embeddings(self, request: EmbeddingRequest) -> Routed[EmbeddingResponse]:
        return await self._router.embeddings(request)

    async def ready(self) -> bool:
        return await self._router.ready()

    async def __del__(self) -> None:
        await self._router.aclose()
