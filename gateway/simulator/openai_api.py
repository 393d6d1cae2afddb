"""OpenAI wire format: chat completions, legacy completions, embeddings and models."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator.content import (
    Completion,
    Prompt,
    Tool,
    count_tokens,
    embed,
    encode_base64,
    generate,
)
from gateway.simulator.state import SimulatorState, get_state
from gateway.simulator.wire import (
    BadRequest,
    before_first_byte,
    event_stream,
    json_response,
    read_json,
    sse,
    sse_batch,
)

_FINISH = {"end": "stop", "stop_sequence": "stop", "length": "length", "tool_use": "tool_calls"}
_ERROR_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "requests"}
_ERROR_CODES = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
_DONE = b"data: [DONE]\n\n"
_MALFORMED = b'data: {"id": "chatcmpl-malformed", "choices": [{"delta": \n\n'
_FINGERPRINT = "fp_raygate_sim"
_MODEL_CREATED = 1_700_000_000


def error_response(
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
) -> Response:
    """An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`."""
    kind = _ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    error = {"message": message, "type": kind, "param": param, "code": code}
    if code is None and status in (401, 429):
        error["code"] = _ERROR_CODES[status]
    return json_response({"error": error}, status, headers=headers)


async def chat_completions(request: Request) -> Response:
    """`POST /v1/chat/completions`, plain or streamed."""
    state, body = await read_json(request)
    if (denied := _deny(request, state)) is not None:
        return denied
    try:
        prompt = _chat_prompt(body)
        completions = generate(prompt, state.settings.answer_words)
        booked = state.answer_book.answer_for(body["messages"]) if state.answer_book else None
        if booked is not None:
            completions = [
                replace(c, text=booked) if c.tool_call is None else c for c in completions
            ]
    except ValueError as exc:
        return error_response(400, str(exc), param=getattr(exc, "param", None))
    stream = body.get("stream") is True
    fault = state.take_fault(request.scope["path"], prompt.model)
    if (early := await before_first_byte(state, fault, error_response, stream=stream)) is not None:
        return early
    ident, created = state.next_id("chatcmpl-"), int(time.time())
    usage = _usage(prompt.prompt_tokens, sum(c.tokens for c in completions))
    if not stream:
        return json_response(
            {
                "id": ident,
                "object": "chat.completion",
                "created": created,
                "model": prompt.model,
                "choices": [_chat_choice(c) for c in completions],
                "usage": usage,
                "system_fingerprint": _FINGERPRINT,
            }
        )
    head = {
        "id": ident,
        "object": "chat.completion.chunk",
        "created": created,
        "model": prompt.model,
        "system_fingerprint": _FINGERPRINT,
    }
    if _include_usage(body):
        head["usage"] = None
    events = sse_batch(head, "choices", ([d] for c in completions for d in _deltas(c)))
    if _include_usage(body):
        events.append(sse({**head, "choices": [], "usage": usage}))
    events.append(_DONE)
    return event_stream(state, events, fault, _MALFORMED)


async def completions(request: Request) -> Response:
    """`POST /v1/completions` (legacy text completions), plain or streamed."""
    state, body = await read_json(request)
    if (denied := _deny(request, state)) is not None:
        return denied
    try:
        model = _model(body)
        prompts = _legacy_prompts(body.get("prompt", ""))
        n = _n(body)
        results = [
            generate(
                Prompt(
                    model=model,
                    user_text=text,
                    prompt_tokens=count_tokens(text),
                    max_tokens=_max_tokens(body, "max_tokens", default=16),
                    stop=_stop(body.get("stop")),
                    n=n,
                ),
                state.settings.answer_words,
            )
            for text in prompts
        ]
    except ValueError as exc:
        return error_response(400, str(exc), param=getattr(exc, "param", None))
    stream = body.get("stream") is True
    fault = state.take_fault(request.scope["path"], model)
    if (early := await before_first_byte(state, fault, error_response, stream=stream)) is not None:
        return early
    choices = [(i * n + c.index, c) for i, batch in enumerate(results) for c in batch]
    usage = _usage(count_tokens(*prompts), sum(c.tokens for _, c in choices))
    head = {
        "id": state.next_id("cmpl-"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    if not stream:
        return json_response(
            {
                **head,
                "choices": [_text_choice(i, c.text, _FINISH[c.finish]) for i, c in choices],
                "usage": usage,
            }
        )
    events = sse_batch(
        head,
        "choices",
        [
            *([_text_choice(i, piece, None)] for i, c in choices for piece in c.pieces()),
            *([_text_choice(i, "", _FINISH[c.finish])] for i, c in choices),
        ],
    )
    if _include_usage(body):
        events.append(sse({**head, "choices": [], "usage": usage}))
    events.append(_DONE)
    return event_stream(state, events, fault, _MALFORMED)


async def embeddings(request: Request) -> Response:
    """`POST /v1/embeddings`: deterministic unit vectors, as floats or base64."""
    state, body = await read_json(request)
    if (denied := _deny(request, state)) is not None:
        return denied
    try:
        model = _model(body)
        texts = _embedding_inputs(body.get("input"))
        dim = body.get("dimensions") or state.settings.embedding_dim
        if not isinstance(dim, int) or dim < 1:
            raise BadRequest("dimensions must be a positive integer", "dimensions")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise BadRequest("encoding_format must be 'float' or 'base64'", "encoding_format")
    except ValueError as exc:
        return error_response(400, str(exc), param=getattr(exc, "param", None))
    fault = state.take_fault(request.scope["path"], model)
    if (early := await before_first_byte(state, fault, error_response, stream=False)) is not None:
        return early
    data = []
    for index, text in enumerate(texts):
        vector = embed(text, dim)
        value: Any = encode_base64(vector) if encoding == "base64" else vector
        data.append({"object": "embedding", "index": index, "embedding": value})
    tokens = count_tokens(*texts)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def list_models(request: Request) -> Response:
    """`GET /v1/models`: the models named in the settings."""
    state = get_state(request)
    state.record(request, None)
    data = [_model_object(model) for model in state.settings.models]
    return json_response({"object": "list", "data": data})


async def get_model(request: Request) -> Response:
    """`GET /v1/models/{id}`: one configured model, or 404."""
    state = get_state(request)
    state.record(request, None)
    model_id: str = request.path_params["model_id"]
    if model_id not in state.settings.models:
        message = f"The model '{model_id}' does not exist or you do not have access to it."
        return error_response(404, message, param="model", code="model_not_found")
    return json_response(_model_object(model_id))


routes = [
    Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/v1/completions", completions, methods=["POST"]),
    Route("/v1/embeddings", embeddings, methods=["POST"]),
    Route("/v1/models", list_models, methods=["GET"]),
    Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
]


def _deny(request: Request, state: SimulatorState) -> Response | None:
    if state.settings.api_key is None:
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and state.key_ok(token.strip()):
        return None
    return error_response(401, "Incorrect API key provided.", code="invalid_api_key")


def _model(body: Any) -> str:
    if not isinstance(body, dict):
        raise BadRequest("We could not parse the JSON body of your request.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequest("you must provide a model parameter", "model")
    return model


def _chat_prompt(body: Any) -> Prompt:
    model = _model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array", "messages")
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise BadRequest("each message must be an object with a 'role'", "messages")
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
        model=model,
        user_text=user_text,
        prompt_tokens=count_tokens(*texts),
        tool_result=texts[-1] if last["role"] in ("tool", "function") else None,
        tools=[
            Tool(t["function"]["name"], t["function"].get("parameters") or {})
            for t in body.get("tools") or []
            if isinstance(t, dict) and isinstance(t.get("function"), dict)
        ],
        max_tokens=_max_tokens(body, "max_completion_tokens") or _max_tokens(body, "max_tokens"),
        stop=_stop(body.get("stop")),
        n=_n(body),
    )
    choice = body.get("tool_choice")
    if choice in ("none", "auto", "required"):
        prompt.tool_mode = choice
    elif isinstance(choice, dict):
        prompt.forced_tool = (choice.get("function") or {}).get("name")
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        prompt.json_mode = True
    elif response_format.get("type") == "json_schema":
        prompt.json_schema = (response_format.get("json_schema") or {}).get("schema") or {}
    return prompt


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") for part in content if isinstance(part, dict) and "text" in part
        )
    return ""


def _stop(stop: Any) -> list[str]:
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str)]
    return []


def _max_tokens(body: dict[str, Any], field: str, default: int | None = None) -> int | None:
    value = body.get(field, default)
    if value is not None and (not isinstance(value, int) or value < 0):
        raise BadRequest(f"{field} must be a non-negative integer", field)
    return value


def _n(body: dict[str, Any]) -> int:
    n = body.get("n")
    if n is None:
        return 1
    if not isinstance(n, int) or not 1 <= n <= 128:
        raise BadRequest("n must be an integer between 1 and 128", "n")
    return n


def _legacy_prompts(prompt: Any) -> list[str]:
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return [" ".join(map(str, prompt))]
    if isinstance(prompt, list) and prompt:
        return [p if isinstance(p, str) else " ".join(map(str, p)) for p in prompt]
    raise BadRequest("prompt must be a string or an array", "prompt")


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str) and value:
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))]
    if isinstance(value, list) and value and all(isinstance(v, str | list) for v in value):
        return [v if isinstance(v, str) else " ".join(map(str, v)) for v in value]
    raise BadRequest("'input' must be a non-empty string or array", "input")


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _tool_call_id(completion: Completion) -> str:
    assert completion.tool_call is not None
    return f"call_{completion.tool_call.key}"


def _chat_choice(completion: Completion) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": completion.text, "refusal": None}
    call = completion.tool_call
    if call is not None:
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": _tool_call_id(completion),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json},
            }
        ]
    return {
        "index": completion.index,
        "message": message,
        "logprobs": None,
        "finish_reason": _FINISH[completion.finish],
    }


def _deltas(completion: Completion) -> list[dict[str, Any]]:
    """The streamed `choices[0]` entries of one choice, in OpenAI's chunk shape."""
    call = completion.tool_call
    if call is None:
        first: dict[str, Any] = {"role": "assistant", "content": "", "refusal": None}
        deltas = [first, *({"content": piece} for piece in completion.pieces())]
    else:
        opening = {
            "index": 0,
            "id": _tool_call_id(completion),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas = [{"role": "assistant", "content": None, "tool_calls": [opening]}]
        arguments = call.arguments_json.split(" ")
        fragments = [arguments[0], *(" " + part for part in arguments[1:])]
        deltas += [
            {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}
            for fragment in fragments
        ]
    entries: list[dict[str, Any]] = [
        {"index": completion.index, "delta": delta, "logprobs": None, "finish_reason": None}
        for delta in deltas
    ]
    entries.append(
        {
            "index": completion.index,
            "delta": {},
            "logprobs": None,
            "finish_reason": _FINISH[completion.finish],
        }
    )
    return entries


def _text_choice(index: int, text: str, finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": None, "finish_reason": finish_reason}


def _model_object(model_id: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": _MODEL_CREATED,
        "owned_by": "raygate-simulator",
    }
