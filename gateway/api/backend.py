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
from gateway.routing.context import RouteContext
from gateway.routing.router import Route, Routed
from gateway.routing.status import RoutingStatus


class Backend(Protocol):
    """The router's surface. Streams yield the Route first, once an upstream has answered.

    `context` (the caller, for `when` / `unless` routing conditions) may be left out: routing
    then treats the caller as matching no condition.
    """

    async def chat(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> Routed[ChatCompletion]: ...

    def chat_stream(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> AsyncIterator[Route | ChatCompletionChunk]: ...

    async def completion(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> Routed[Completion]: ...

    def completion_stream(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> AsyncIterator[Route | Completion]: ...

    async def embeddings(
        self, request: EmbeddingRequest, context: RouteContext | None = None
    ) -> Routed[EmbeddingResponse]: ...

    async def ready(self) -> bool: ...

    async def routing_status(self) -> RoutingStatus:
        """Breakers, health and load of every target (`Router.status()`)."""
        ...
