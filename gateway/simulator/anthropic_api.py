"""Anthropic wire format: `POST /v1/messages`, plain or streamed as Anthropic's SSE events."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator.content import Completion, Prompt, Tool, count_tokens, generate
from gateway.simulator.state import SimulatorState
from gateway.simulator.wire import (
    BadRequest,
    before_first_byte,
    event_stream,
    json_response,
    read_json,
    sse,
)

_STOP_REASONS = {
    "end": "end_turn",
    "stop_sequence": "stop_sequence",
    "length": "max_tokens",
    "tool_use": "tool_use",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_MALFORMED = (
    b"event: content_block_delta\n"
    b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": \n\n'
)


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return json_response(body, status, headers=headers)


async def messages(request: Request) -> Response:
    """`POST /v1/messages`."""
    state, body = await read_json(request)
    if (denied := _deny(request, state)) is not None:
        return denied
    try:
        prompt = _prompt(body)
        (completion,) = generate(prompt, state.settings.answer_words)
    except ValueError as exc:
        return error_response(400, str(exc))
    stream = body.get("stream") is True
    fault = state.take_fault(request.scope["path"], prompt.model)
    if (early := await before_first_byte(state, fault, error_response, stream=stream)) is not None:
        return early
    message = {
        "id": state.next_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": [_block(completion)],
        "stop_reason": _STOP_REASONS[completion.finish],
        "stop_sequence": completion.stop_sequence,
        "usage": {"input_tokens": prompt.prompt_tokens, "output_tokens": completion.tokens},
    }
    if not stream:
        return json_response(message)
    return event_stream(state, _events(message, completion), fault, _MALFORMED)


routes = [Route("/v1/messages", messages, methods=["POST"])]


def _deny(request: Request, state: SimulatorState) -> Response | None:
    if not state.key_ok(request.headers.get("x-api-key")):
        return error_response(401, "invalid x-api-key")
    if "anthropic-version" not in request.headers:
        return error_response(400, "anthropic-version: header is required")
    return None


def _prompt(body: Any) -> Prompt:
    if not isinstance(body, dict):
        raise BadRequest("The request body is not valid JSON.")
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            raise BadRequest(f"{field}: Field required")
    model, max_tokens, messages = body["model"], body["max_tokens"], body["messages"]
    if not isinstance(model, str) or not model:
        raise BadRequest("model: Input should be a valid string")
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("max_tokens: Input should be a positive integer")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise BadRequest("messages: Input should be a valid list")
    if not messages:
        raise BadRequest("messages: at least one message is required")
    texts = [_text(body.get("system"))] + [_text(m.get("content")) for m in messages]
    user_text = next(
        (
            _text(m.get("content"), tool_results=False)
            for m in reversed(messages)
            if m.get("role") == "user"
        ),
        "",
    )
    prompt = Prompt(
        model=model,
        user_text=user_text,
        prompt_tokens=count_tokens(*texts),
        tool_result=_tool_result(messages[-1]) if messages else None,
        tools=[
            Tool(t["name"], t.get("input_schema") or {})
            for t in body.get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("name"), str)
        ],
        max_tokens=max_tokens,
        stop=[s for s in body.get("stop_sequences") or [] if isinstance(s, str)],
    )
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "none":
        prompt.tool_mode = "none"
    elif choice.get("type") == "tool":
        prompt.forced_tool = choice.get("name")
    return prompt


def _text(content: Any, *, tool_results: bool = True) -> str:
    """The text of a `system` value or message content (a string or a list of blocks)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for block in content:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_result" and tool_results:
            texts.append(_text(block.get("content")))
        elif block.get("type") == "tool_use":
            texts.append(json.dumps(block.get("input", {})))
    return " ".join(texts)


def _tool_result(message: dict[str, Any]) -> str | None:
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, list):
        return None
    results = [
        _text(block.get("content"))
        for block in content
        if isinstance(block, dict) and block.get("type") == "tool_result"
    ]
    return " ".join(results) if results else None


def _block(completion: Completion) -> dict[str, Any]:
    call = completion.tool_call
    if call is None:
        return {"type": "text", "text": completion.text}
    return {
        "type": "tool_use",
        "id": f"toolu_{call.key}",
        "name": call.name,
        "input": call.arguments,
    }


def _events(message: dict[str, Any], completion: Completion) -> list[bytes]:
    """The SSE events Anthropic sends for `message`."""
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**message["usage"], "output_tokens": 0}
    block = message["content"][0]
    call = completion.tool_call
    opening: dict[str, Any]
    if call is None:
        opening = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in completion.pieces()]
    else:
        opening = {**block, "input": {}}
        parts = call.arguments_json.split(" ")
        fragments = [parts[0], *(" " + part for part in parts[1:])]
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in fragments]
    events = [
        sse({"type": "message_start", "message": start}, "message_start"),
        sse(
            {"type": "content_block_start", "index": 0, "content_block": opening},
            "content_block_start",
        ),
        sse({"type": "ping"}, "ping"),
    ]
    events += [
        sse({"type": "content_block_delta", "index": 0, "delta": delta}, "content_block_delta")
        for delta in deltas
    ]
    events += [
        sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
        sse(
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": message["stop_reason"],
                    "stop_sequence": message["stop_sequence"],
                },
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
            "message_delta",
        ),
        sse({"type": "message_stop"}, "message_stop"),
    ]
    return events
