"""`POST /v1/chat/completions`: the input policy, then the semantic cache, then the router.

A cache hit is answered here (JSON, or replayed as a stream) and still passes the output
policy; a miss goes to the router and its answer is stored once complete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from gateway.api.caching import control_of
from gateway.api.exchange import Exchange
from gateway.api.policy import filter_answer, filter_stream
from gateway.api.streaming import sse_data
from gateway.protocol.openai import ChatCompletionRequest
from gateway.routing.router import Route

if TYPE_CHECKING:
    from gateway.api.app import GatewayAPI


async def chat_completion(api: GatewayAPI, request: Request) -> Response:
    """`POST /v1/chat/completions`: policy, then the cache, then the router."""
    body = await api.enforce(request, await api.parse(request, ChatCompletionRequest))
    control = control_of(request.headers.get("x-raygate-cache-control"))
    exchange: Exchange = request.state.exchange
    probe = None
    if api.cache is not None:
        probe = await api.cache.probe(exchange, body, control)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if probe is not None and probe.hit:
        if body.stream:
            items = filter_stream(api, request, api.cache.replay(probe))  # type: ignore[union-attr]
            return await api.stream(request, items, openai_chunk_encoder(include_usage))
        exchange.route = Route(target=f"cache/{exchange.cache_phase}")
        completion = api.cache.completion(probe)  # type: ignore[union-attr]
        exchange.note_answer(completion)
        exchange.cost_usd = 0.0
        answer = await filter_answer(api, request, completion)
        headers = api.headers(request, exchange.route) | hit_headers(exchange)
        if exchange.admission is not None:
            headers.update(exchange.admission.headers)
        return JSONResponse(answer.wire(), headers=headers)
    context = api.context(request)
    if body.stream:
        routed = api.backend.chat_stream(body, context)
        if api.cache is not None:
            routed = api.cache.recording(probe, routed)
        items = filter_stream(api, request, routed)
        return await api.stream(request, items, openai_chunk_encoder(include_usage))
    call = api.backend.chat(body, context)
    if api.cache is not None:
        call = api.cache.recorded(probe, call)
    return await api.answer(request, call)


def hit_headers(exchange: Exchange) -> dict[str, str]:
    headers = {"x-raygate-cost-usd": f"{0.0:.8f}"}
    if exchange.cost_avoided_usd is not None:
        headers["x-raygate-cost-avoided-usd"] = f"{exchange.cost_avoided_usd:.8f}"
    return headers


def openai_chunk_encoder(include_usage: bool) -> Callable[[Any], bytes | None]:
    """Encode chunks; drop usage unless the client asked for it (the gateway always does)."""

    def encode(chunk: BaseModel) -> bytes | None:
        usage = getattr(chunk, "usage", None)
        if not include_usage and usage is not None:
            if not getattr(chunk, "choices", None):
                return None
            chunk = chunk.model_copy(update={"usage": None})
        return sse_data(chunk.model_dump(mode="json", exclude_none=True))

    return encode
