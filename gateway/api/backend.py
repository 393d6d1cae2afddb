"""The backend stage: the router, in-process or behind a Serve handle, asked for an answer.

`Backend` is the router's surface (`gateway.routing.Router` has it; so does the ingress's
client of the router deployment). `Upstream` is the stage: it asks the backend for a whole
answer or a stream, as the request says, with the caller's identity for routing conditions,
and notes the route taken on the request's exchange.
"""

from __future__ import annotations

from typing import Protocol

from gateway.api.exchange import Exchange
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
from gateway.routing.routed import Routed, RoutedStream
from gateway.routing.status import RoutingStatus

ChatAnswer = Routed[ChatCompletion] | RoutedStream[ChatCompletionChunk]
CompletionAnswer = Routed[Completion] | RoutedStream[Completion]


class Backend(Protocol):
    """The router's surface. A stream is returned once an upstream sent its first chunk.

    `context` (the caller, for `when` / `unless` routing conditions) may be left out: routing
    then treats the caller as matching no condition.
    """

    async def chat(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> Routed[ChatCompletion]: ...

    async def chat_stream(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> RoutedStream[ChatCompletionChunk]: ...

    async def completion(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> Routed[Completion]: ...

    async def completion_stream(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> RoutedStream[Completion]: ...

    async def embeddings(
        self, request: EmbeddingRequest, context: RouteContext | None = None
    ) -> Routed[EmbeddingResponse]: ...

    async def not_ready(self) -> list[str]:
        """What cannot answer yet (e.g. a local model still starting); empty when ready."""
        ...

    async def routing_status(self) -> RoutingStatus:
        """Breakers, health and load of every target (`Router.status()`)."""
        ...


class Upstream:
    """The backend stage: an answer from the first target that gives one."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def chat(self, exchange: Exchange, body: ChatCompletionRequest) -> ChatAnswer:
        """A chat answer, streamed when the request asks for a stream."""
        context = exchange.route_context()
        answer: ChatAnswer
        if body.stream:
            answer = await self.backend.chat_stream(body, context)
        else:
            answer = await self.backend.chat(body, context)
            exchange.note_usage(answer.response.usage)  # charged even if then withheld
        exchange.route = answer.route
        return answer

    async def completion(self, exchange: Exchange, body: CompletionRequest) -> CompletionAnswer:
        """A legacy completion, streamed when the request asks for a stream."""
        context = exchange.route_context()
        answer: CompletionAnswer
        if body.stream:
            answer = await self.backend.completion_stream(body, context)
        else:
            answer = await self.backend.completion(body, context)
            exchange.note_usage(answer.response.usage)  # charged even if then withheld
        exchange.route = answer.route
        return answer

    async def embeddings(
        self, exchange: Exchange, body: EmbeddingRequest
    ) -> Routed[EmbeddingResponse]:
        """Embeddings of the request's input."""
        answer = await self.backend.embeddings(body, exchange.route_context())
        exchange.route = answer.route
        return answer
