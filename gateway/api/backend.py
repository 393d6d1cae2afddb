"""What the API needs behind it: the router, in-process or through a Serve handle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.routing.router import Route, Routed


class Backend(Protocol):
    """The router's surface. Streams yield the Route first, once an upstream has answered."""

    async def chat(self, request: ChatCompletionRequest) -> Routed[ChatCompletion]: ...

    def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[Route | ChatCompletionChunk]: ...

    async def completion(self, request: CompletionRequest) -> Routed[Completion]: ...

    def completion_stream(
        self, request: CompletionRequest
    ) -> AsyncIterator[Route | Completion]: ...

    async def embeddings(self, request: EmbeddingRequest) -> Routed[EmbeddingResponse]: ...

    async def ready(self) -> bool: ...
