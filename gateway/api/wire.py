"""How each API puts the gateway's canonical answers on the wire.

The pipeline works in OpenAI's shapes; a route names the wire its clients speak: OpenAI's
JSON and `data:` events ending in `[DONE]`, or Anthropic's `Message` and named events. A
stream that breaks after it started ends with the wire's error event instead of its end.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, Protocol, TypeVar

from gateway.api.errors import anthropic_body
from gateway.api.streaming import DONE, sse_data, sse_event
from gateway.errors import GatewayError
from gateway.protocol.anthropic_convert import chat_to_message
from gateway.protocol.anthropic_convert_stream import chunks_to_events
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    Completion,
    EmbeddingResponse,
)
from gateway.protocol.responses import Response as ResponseObject
from gateway.protocol.responses_convert import chat_to_response
from gateway.protocol.responses_stream import ResponseEvents

_T_contra = TypeVar("_T_contra", contravariant=True)
_C = TypeVar("_C", ChatCompletionChunk, Completion)
_C_contra = TypeVar("_C_contra", contravariant=True)


class Wire(Protocol[_T_contra, _C_contra]):
    """An API's encoding of whole answers (`_T`) and streams of chunks (`_C`)."""

    def answer(self, response: _T_contra) -> dict[str, Any]:
        """A whole answer as the JSON body."""
        ...

    def stream(self, chunks: AsyncGenerator[_C_contra, None]) -> AsyncGenerator[bytes, None]:
        """The chunks as server-sent events, the end marker last (it closes `chunks`)."""
        ...

    def error_event(self, error: GatewayError) -> bytes:
        """The event that ends a stream which broke after it started."""
        ...


class OpenAIWire:
    """OpenAI's wire: the answer as it is; chunks as `data:` events, then `data: [DONE]`.

    The gateway always asks upstreams for usage; the usage-only chunk reaches the client
    only when it asked for it (`stream_options.include_usage`).
    """

    def __init__(self, *, include_usage: bool = False) -> None:
        self._include_usage = include_usage

    def answer(self, response: ChatCompletion | Completion | EmbeddingResponse) -> dict[str, Any]:
        return response.wire()

    async def stream(self, chunks: AsyncGenerator[_C, None]) -> AsyncGenerator[bytes, None]:
        async with aclosing(chunks):
            async for chunk in chunks:
                if chunk.usage is not None and not self._include_usage:
                    if not chunk.choices:
                        continue
                    chunk = chunk.model_copy(update={"usage": None})
                yield sse_data(chunk.model_dump(mode="json", exclude_none=True))
        yield DONE

    def error_event(self, error: GatewayError) -> bytes:
        return sse_data(error.to_body())


class AnthropicWire:
    """Anthropic's Messages wire: a `Message`, or its exact stream event sequence (no end
    marker: `message_stop` ends it)."""

    def __init__(self, model: str) -> None:
        self._model = model

    def answer(self, response: ChatCompletion) -> dict[str, Any]:
        return chat_to_message(response).model_dump(mode="json", exclude_none=True)

    async def stream(
        self, chunks: AsyncGenerator[ChatCompletionChunk, None]
    ) -> AsyncGenerator[bytes, None]:
        async with aclosing(chunks):
            async for event in chunks_to_events(chunks, model=self._model):
                yield sse_event(event.type, event.model_dump(mode="json", exclude_none=True))

    def error_event(self, error: GatewayError) -> bytes:
        return sse_event("error", anthropic_body(error))


class ResponsesWire:
    """OpenAI's Responses wire: a response object, or its typed event sequence (each event
    named and numbered; `response.completed` ends it, no end marker). `shell` is the response
    before its answer (id, echoed request fields); `keep` stores the finished response
    before the client sees it complete (a failure there is the client's error: a 503, or
    `error` + `response.failed` on a stream)."""

    def __init__(
        self,
        shell: ResponseObject,
        keep: Callable[[ResponseObject], Awaitable[None]] | None = None,
    ) -> None:
        self._shell = shell
        self._keep = keep
        self._events = ResponseEvents(shell)
        self._final: tuple[ChatCompletion, ResponseObject] | None = None

    async def finish(self, chat: ChatCompletion) -> ResponseObject:
        """The response for a whole answer, kept (when asked) before it is sent."""
        response = self._converted(chat)
        if self._keep is not None:
            await self._keep(response)
        return response

    def answer(self, response: ChatCompletion) -> dict[str, Any]:
        return self._converted(response).wire()

    async def stream(
        self, chunks: AsyncGenerator[ChatCompletionChunk, None]
    ) -> AsyncGenerator[bytes, None]:
        async with aclosing(chunks):
            async for event in self._events.events(chunks):
                final = self._events.final
                if final is not None and self._keep is not None:
                    await self._keep(final)
                yield sse_event(event.type, event.model_dump(mode="json"))

    def error_event(self, error: GatewayError) -> bytes:
        events = self._events.failure(error)
        return b"".join(sse_event(e.type, e.model_dump(mode="json")) for e in events)

    def _converted(self, chat: ChatCompletion) -> ResponseObject:
        # Converted once: the output items' ids must be the same in the store and the answer.
        if self._final is None or self._final[0] is not chat:
            self._final = (chat, chat_to_response(chat, self._shell))
        return self._final[1]
