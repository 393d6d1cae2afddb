"""Anthropic's Messages API in front of any configured model, and its token counter.

The request is translated to the canonical chat request and runs the chat pipeline (policy,
cache, router, output policy); the answer or stream is translated back, so Anthropic SDK
users reach every provider.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.accounting.tokens import estimate_tokens
from gateway.api.openapi import AnthropicError, answers, request_body
from gateway.api.pipeline import Pipeline
from gateway.api.wire import AnthropicWire
from gateway.protocol.anthropic import CountTokensRequest, Message, MessagesRequest, TokenCount
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

    @router.post(
        "/v1/messages/count_tokens",
        summary="Count a Messages request's input tokens (an estimate: no upstream is asked)",
        openapi_extra=request_body(CountTokensRequest),
        responses=answers(TokenCount, error=AnthropicError),
    )
    async def count_tokens(request: Request) -> Response:
        exchange, body = await pipeline.admit(request, CountTokensRequest, metered=False)
        tools = [t.model_dump_json(exclude_none=True) for t in body.tools or []]
        text = "\n".join([exchange.prompt or "", *tools])
        count = TokenCount(input_tokens=await asyncio.to_thread(estimate_tokens, text))
        exchange.tokens_in = count.input_tokens
        return JSONResponse(count.wire(), headers={"x-raygate-token-count": "estimate"})

    return router
