"""OpenAI's Responses API: `POST /v1/responses`, plain or streamed as the typed event
sequence (`response.created` ... `response.completed`), with function tool calls, usage,
`max_output_tokens` (an `incomplete` response) and `text.format`.

The simulator keeps nothing: `previous_response_id` is refused (400), whatever `store` says,
so a test sees at once if a gateway relies on the upstream's conversation state.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator.content import Completion, Prompt, Tool, count_tokens, generate
from gateway.simulator.openai_api import error_response
from gateway.simulator.wire import (
    BadRequest,
    before_first_byte,
    event_stream,
    json_response,
    read_json,
    sse,
)

_MALFORMED = b'event: response.output_text.delta\ndata: {"type": "response.output_te\n\n'


async def create_response(request: Request) -> Response:
    """`POST /v1/responses`."""
    state, body = await read_json(request)
    if state.settings.api_key is not None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not state.key_ok(token.strip()):
            return error_response(401, "Incorrect API key provided.", code="invalid_api_key")
    try:
        prompt = _prompt(body)
        [completion] = generate(prompt, state.settings.answer_words)
    except ValueError as exc:
        return error_response(400, str(exc), param=getattr(exc, "param", None))
    stream = body.get("stream") is True
    fault = state.take_fault(request.scope["path"], prompt.model)
    if (early := await before_first_byte(state, fault, error_response, stream=stream)) is not None:
        return early
    ident = state.next_id("resp_")
    shell = _shell(body, ident, prompt.model)
    item = _item(completion, ident)
    done = _finished(shell, item, completion, prompt.prompt_tokens)
    if not stream:
        return json_response(done)
    events = _Events()
    events.add("response.created", response=shell)
    events.add("response.in_progress", response=shell)
    _item_events(events, item, completion)
    events.add(f"response.{done['status']}", response=done)
    return event_stream(state, events.encoded, fault, _MALFORMED)


routes = [Route("/v1/responses", create_response, methods=["POST"])]


class _Events:
    """The numbered events of one stream, encoded as SSE with their `event:` names."""

    def __init__(self) -> None:
        self.encoded: list[bytes] = []

    def add(self, kind: str, **fields: Any) -> None:
        data = {"type": kind, "sequence_number": len(self.encoded), **fields}
        self.encoded.append(sse(data, event=kind))


def _item_events(events: _Events, item: dict[str, Any], completion: Completion) -> None:
    item_id = item["id"]
    if item["type"] == "function_call":
        events.add("response.output_item.added", output_index=0, item={**item, "arguments": ""})
        arguments = item["arguments"].split(" ")
        for fragment in [arguments[0], *(" " + part for part in arguments[1:])]:
            events.add(
                "response.function_call_arguments.delta",
                item_id=item_id,
                output_index=0,
                delta=fragment,
            )
        events.add(
            "response.function_call_arguments.done",
            item_id=item_id,
            output_index=0,
            name=item["name"],
            arguments=item["arguments"],
        )
        events.add("response.output_item.done", output_index=0, item=item)
        return
    part = item["content"][0]
    opened = {**item, "status": "in_progress", "content": []}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    events.add("response.output_item.added", output_index=0, item=opened)
    events.add("response.content_part.added", **where, part={**part, "text": ""})
    for piece in completion.pieces():
        events.add("response.output_text.delta", **where, delta=piece, logprobs=[])
    events.add("response.output_text.done", **where, text=part["text"], logprobs=[])
    events.add("response.content_part.done", **where, part=part)
    events.add("response.output_item.done", output_index=0, item=item)


def _prompt(body: Any) -> Prompt:
    if not isinstance(body, dict):
        raise BadRequest("We could not parse the JSON body of your request.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    if body.get("previous_response_id") is not None:
        raise BadRequest("the simulator stores no responses", "previous_response_id")
    items = _input(body.get("input"))
    texts = [body.get("instructions") or "", *(_item_text(item) for item in items)]
    users = [_item_text(item) for item in items if _is_user(item)]
    last = items[-1]
    prompt = Prompt(
        model=model,
        user_text=users[-1] if users else "",
        prompt_tokens=count_tokens(*texts),
        tool_result=_item_text(last) if last.get("type") == "function_call_output" else None,
        tools=[
            Tool(t["name"], t.get("parameters") or {})
            for t in body.get("tools") or []
            if isinstance(t, dict)
            and t.get("type") == "function"
            and isinstance(t.get("name"), str)
        ],
        max_tokens=_max_output_tokens(body),
    )
    choice = body.get("tool_choice")
    if choice in ("none", "auto", "required"):
        prompt.tool_mode = choice
    elif isinstance(choice, dict):
        prompt.forced_tool = choice.get("name")
    fmt = (body.get("text") or {}).get("format") or {}
    if fmt.get("type") == "json_object":
        prompt.json_mode = True
    elif fmt.get("type") == "json_schema":
        prompt.json_schema = fmt.get("schema") or {}
    return prompt


def _input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str) and value:
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(i, dict) for i in value):
        return value
    raise BadRequest("'input' must be a non-empty string or array of items", "input")


def _is_user(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and item.get("role") == "user"


def _item_text(item: dict[str, Any]) -> str:
    content = item.get("output") if item.get("type") == "function_call_output" else None
    if content is None:
        content = item.get("content", item.get("arguments", ""))
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _max_output_tokens(body: dict[str, Any]) -> int | None:
    value = body.get("max_output_tokens")
    if value is not None and (not isinstance(value, int) or value < 1):
        raise BadRequest("max_output_tokens must be a positive integer", "max_output_tokens")
    return value


def _shell(body: dict[str, Any], ident: str, model: str) -> dict[str, Any]:
    return {
        "id": ident,
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": (body.get("reasoning") or {}).get("effort"), "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _item(completion: Completion, ident: str) -> dict[str, Any]:
    key = ident.removeprefix("resp_")
    call = completion.tool_call
    if call is not None:
        return {
            "type": "function_call",
            "id": f"fc_{key}",
            "call_id": f"call_{call.key}",
            "name": call.name,
            "arguments": call.arguments_json,
            "status": "completed",
        }
    status = "incomplete" if completion.finish == "length" else "completed"
    return {
        "type": "message",
        "id": f"msg_{key}",
        "status": status,
        "role": "assistant",
        "content": [
            {"type": "output_text", "text": completion.text, "annotations": [], "logprobs": []}
        ],
    }


def _finished(
    shell: dict[str, Any], item: dict[str, Any], completion: Completion, prompt_tokens: int
) -> dict[str, Any]:
    incomplete = completion.finish == "length"
    output_tokens = completion.tokens
    return {
        **shell,
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "output": [item],
        "usage": {
            "input_tokens": prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt_tokens + output_tokens,
        },
    }
