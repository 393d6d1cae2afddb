"""`POST /v1/messages`: Anthropic's Messages API in front of any configured model.

The request is translated to the canonical chat request, routed like any other, and the
answer (or stream) translated back, so Anthropic SDK users reach every provider.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response

from gateway.api.errors import anthropic_body
from gateway.api.policy import filter_stream
from gateway.api.streaming import sse_event
from gateway.protocol.anthropic import MessagesRequest
from gateway.protocol.anthropic_convert import (
    chat_to_message,
    chunks_to_events,
    messages_to_chat_request,
)
from gateway.protocol.openai import ChatCompletionChunk

if TYPE_CHECKING:
    from gateway.api.app import GatewayAPI


def add_messages_route(app: FastAPI, api: GatewayAPI) -> None:
    """Register `POST /v1/messages` on `app`."""

    @app.post("/v1/messages")
    async def messages(request: Request) -> Response:
        body = await api.parse(request, MessagesRequest)
        chat_request = await api.enforce(request, messages_to_chat_request(body))
        if not body.stream:
            return await api.answer(
                request,
                api.backend.chat(chat_request, api.context(request)),
                wire=lambda chat: chat_to_message(chat).model_dump(mode="json", exclude_none=True),
            )
        items = filter_stream(
            api, request, api.backend.chat_stream(chat_request, api.context(request))
        )
        return await api.stream(
            request,
            _as_events(items, model=body.model),
            _encode_event,
            on_error=lambda exc: sse_event("error", anthropic_body(exc)),
            done=None,
        )


async def _as_events(items: AsyncIterator[Any], *, model: str) -> AsyncIterator[Any]:
    # The Route passes through untouched; the chunks after it become Anthropic events.
    route = await anext(items)
    yield route

    async def chunks() -> AsyncIterator[ChatCompletionChunk]:
        async for chunk in items:
            yield chunk

    try:
        async for event in chunks_to_events(chunks(), model=model):
            yield event
    finally:
        await items.aclose()  # type: ignore[attr-defined]


def _encode_event(event: Any) -> bytes:
    return sse_event(event.type, event.model_dump(mode="json", exclude_none=True))
