"""Cohere v2: `POST /v2/chat` (whole, or streamed as Cohere's typed SSE events) and
`POST /v2/embed`, with a bearer key and Cohere's `{"id", "message"}` errors."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator.content import Completion, Prompt, Tool, count_tokens, embed, generate
from gateway.simulator.state import SimulatorState
from gateway.simulator.wire import (
    BadRequest,
    before_first_byte,
    event_stream,
    json_response,
    read_json,
    sse,
)

_FINISH = {
    "end": "COMPLETE",
    "stop_sequence": "STOP_SEQUENCE",
    "length": "MAX_TOKENS",
    "tool_use": "TOOL_CALL",
}
_ROLES = ("system", "user", "assistant", "tool")
_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
_MALFORMED = b'event: content-delta\ndata: {"type": "content-delta", "delta": \n\n'


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error in Cohere's shape: `{"id", "message"}`."""
    return json_response({"id": str(uuid.uuid4()), "message": message}, status, headers=headers)


async def chat(request: Request) -> Response:
    """`POST /v2/chat`."""
    state, body = await read_json(request)
    if (denied := _deny(request, state)) is not None:
        return denied
    try:
        prompt = _prompt(body)
        (completion,) = generate(prompt, state.settings.answer_words)
    except ValueError as exc:
        return error_response(400, f"invalid request: {exc}")
    stream = body.get("stream") is True
    fault = state.take_fault(request.scope["path"], prompt.model)
    if (early := await before_first_byte(state, fault, error_response, stream=stream)) is not None:
        return early
    ident = str(uuid.uuid4())
    tokens = {"input_tokens": prompt.prompt_tokens, "output_tokens": completion.tokens}
    usage = {"billed_units": dict(tokens), "tokens": dict(tokens)}
    if not stream:
        return json_response(
            {
                "id": ident,
                "finish_reason": _FINISH[completion.finish],
                "message": _message(completion),
                "usage": usage,
            }
        )
    events = [
        _event(
            "message-start",
            id=ident,
            delta={
                "message": {
                    "role": "assistant",
                    "content": [],
                    "tool_plan": "",
                    "tool_calls": [],
                    "citations": [],
                }
            },
        ),
        *_content_events(completion),
        _event("message-end", delta={"finish_reason": _FINISH[completion.finish], "usage": usage}),
    ]
    return event_stream(state, events, fault, _MALFORMED)


async def embed_texts(request: Request) -> Response:
    """`POST /v2/embed`: deterministic float vectors."""
    state, body = await read_json(request)
    if (denied := _deny(request, state)) is not None:
        return denied
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        return error_response(400, "invalid request: model must be specified")
    texts = body.get("texts")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        return error_response(400, "invalid request: texts must be a non-empty list of strings")
    if body.get("input_type") not in _INPUT_TYPES:
        return error_response(
            400, "invalid request: valid input_type must be provided with the provided model"
        )
    kinds = body.get("embedding_types") or ["float"]
    if kinds != ["float"]:
        return error_response(400, "invalid request: the simulator embeds as float only")
    dim = body.get("output_dimension") or state.settings.embedding_dim
    fault = state.take_fault(request.scope["path"], body["model"])
    if (early := await before_first_byte(state, fault, error_response, stream=False)) is not None:
        return early
    return json_response(
        {
            "id": str(uuid.uuid4()),
            "embeddings": {"float": [embed(text, int(dim)) for text in texts]},
            "texts": texts,
            "meta": {
                "api_version": {"version": "2"},
                "billed_units": {"input_tokens": count_tokens(*texts)},
            },
            "response_type": "embeddings_by_type",
        }
    )


routes = [
    Route("/v2/chat", chat, methods=["POST"]),
    Route("/v2/embed", embed_texts, methods=["POST"]),
]


def _deny(request: Request, state: SimulatorState) -> Response | None:
    if state.settings.api_key is None:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and state.key_ok(token.strip()):
        return None
    return error_response(401, "invalid api token")


def _prompt(body: Any) -> Prompt:
    if not isinstance(body, dict) or not isinstance(body.get("model"), str):
        raise BadRequest("model must be specified")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise BadRequest(f"each message needs a role among {', '.join(_ROLES)}")
        if message["role"] == "tool" and not message.get("tool_call_id"):
            raise BadRequest("a tool message needs a tool_call_id")
    texts = [_text(m.get("content")) for m in messages]
    user_text = next(
        (
            t
            for m, t in zip(reversed(messages), reversed(texts), strict=True)
            if m["role"] == "user"
        ),
        "",
    )
    last = messages[-1]
    prompt = Prompt(
        model=body["model"],
        user_text=user_text,
        prompt_tokens=count_tokens(*texts),
        tool_result=texts[-1] if last["role"] == "tool" else None,
        tools=[
            Tool(t["function"]["name"], t["function"].get("parameters") or {})
            for t in body.get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("function"), dict)
        ],
        max_tokens=body.get("max_tokens"),
        stop=[s for s in body.get("stop_sequences") or [] if isinstance(s, str)],
    )
    choice = body.get("tool_choice")
    if choice is not None and choice not in ("REQUIRED", "NONE"):
        raise BadRequest("tool_choice must be REQUIRED or NONE")
    if choice == "NONE":
        prompt.tool_mode = "none"
    elif choice == "REQUIRED":
        prompt.tool_mode = "required"
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        schema = response_format.get("json_schema")
        if schema:
            prompt.json_schema = schema
        else:
            prompt.json_mode = True
    return prompt


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text") or part.get("document", {}).get("data") or "")
            for part in content
            if isinstance(part, dict)
        )
    return ""


def _tool_call(completion: Completion) -> dict[str, Any]:
    call = completion.tool_call
    assert call is not None
    return {
        "id": f"{call.name}_{call.key[:8]}",
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments_json},
    }


def _message(completion: Completion) -> dict[str, Any]:
    if completion.tool_call is not None:
        return {
            "role": "assistant",
            "tool_plan": f"I will call {completion.tool_call.name}.",
            "tool_calls": [_tool_call(completion)],
        }
    return {"role": "assistant", "content": [{"type": "text", "text": completion.text}]}


def _event(kind: str, **fields: Any) -> bytes:
    return sse({"type": kind, **fields}, event=kind)


def _content_events(completion: Completion) -> list[bytes]:
    if completion.tool_call is not None:
        call = _tool_call(completion)
        arguments = call["function"]["arguments"]
        start = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
        pieces = [arguments[i : i + 8] for i in range(0, len(arguments), 8)]
        plan = f"I will call {completion.tool_call.name}."
        return [
            _event("tool-plan-delta", delta={"message": {"tool_plan": plan}}),
            _event("tool-call-start", index=0, delta={"message": {"tool_calls": start}}),
            *(
                _event(
                    "tool-call-delta",
                    index=0,
                    delta={"message": {"tool_calls": {"function": {"arguments": piece}}}},
                )
                for piece in pieces
            ),
            _event("tool-call-end", index=0),
        ]
    start = {"message": {"content": {"type": "text", "text": ""}}}
    return [
        _event("content-start", index=0, delta=start),
        *(
            _event("content-delta", index=0, delta={"message": {"content": {"text": piece}}})
            for piece in completion.pieces()
        ),
        _event("content-end", index=0),
    ]
