"""Anthropic's Messages API in front of any configured model.

The request is translated to the canonical chat request and runs the chat pipeline (policy,
cache, router, output policy); the answer or stream is translated back, so Anthropic SDK
users reach every provider.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.api.openapi import AnthropicError, answers, request_body
from gateway.api.pipeline import Pipeline
from gateway.api.wire import AnthropicWire
from gateway.protocol.anthropic import Message, MessagesRequest
from gateway.protocol.anthropic_convert import messages_to_chat_request


def anthropic_routes(pipeline: Pipeline) -> APIRouter:
    """`POST /v1/messages`."""
    router = APIRouter()

    @router.post(
        "/v1/messages",
        summary="Create a message, Anthropic's Messages API (streamed with stream: true)",
        openapi_extra=request_body(MessagesRequest),
        responses=answers(Message, stream=True, error=AnthropicError),
    )
    async def messages(request: Request) -> Response:
        exchange, body = await pipeline.admit(request, MessagesRequest)
        answer = await pipeline.chat(exchange, messages_to_chat_request(body))
        return await pipeline.respond(exchange, answer, AnthropicWire(body.model))

    return router
