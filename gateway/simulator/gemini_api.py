"""Gemini wire format: `POST /v1beta/models/{model}:{action}` (generate, stream, embed)."""

from __future__ import annotations

import json
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

_FINISH = {"end": "STOP", "stop_sequence": "STOP", "length": "MAX_TOKENS", "tool_use": "STOP"}
_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MALFORMED = b'data: {"candidates": [{"content": {"parts": [{"text": \n\n'


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """An error in Gemini's shape: `{"error": {"code", "message", "status"}}`."""
    name = _STATUSES.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
    body = {"error": {"code": status, "message": message, "status": name}}
    return json_response(body, status, headers=headers)


async def model_action(request: Request) -> Response:
    """Dispatch `models/{model}:{action}` to the action's handler."""
    state, body = await read_json(request)
    model, _, action = request.path_params["model_action"].rpartition(":")
    handler = _ACTIONS.get(action)
    if not model or handler is None:
        return error_response(404, f"Method not found: {action or '(none)'}")
    if (denied := _deny(request, state)) is not None:
        return denied
    if not isinstance(body, dict):
        return error_response(400, "Invalid JSON payload received.")
    try:
        return await handler(request, state, model, body)
    except ValueError as exc:
        return error_response(400, str(exc))


async def _generate(
    request: Request, state: SimulatorState, model: str, body: dict[str, Any]
) -> Response:
    prompt = _prompt(model, body)
    completions = generate(prompt, state.settings.answer_words)
    stream = request.path_params["model_action"].endswith(":streamGenerateContent")
    fault = state.take_fault(request.scope["path"], model)
    if (early := await before_first_byte(state, fault, error_response, stream=stream)) is not None:
        return early
    output_tokens = sum(c.tokens for c in completions)
    head = {"modelVersion": model, "responseId": state.next_id("resp-")}
    usage = {
        "promptTokenCount": prompt.prompt_tokens,
        "candidatesTokenCount": output_tokens,
        "totalTokenCount": prompt.prompt_tokens + output_tokens,
    }
    if not stream:
        candidates = [_candidate(c, _parts(c), final=True) for c in completions]
        return json_response({"candidates": candidates, **head, "usageMetadata": usage})
    chunks: list[dict[str, Any]] = [
        {"candidates": [_candidate(c, parts, final=last)], **head}
        for c in completions
        for parts, last in _streamed_parts(c)
    ]
    chunks[-1]["usageMetadata"] = usage
    if request.query_params.get("alt") == "sse":
        return event_stream(state, [sse(chunk) for chunk in chunks], fault, _MALFORMED)
    pieces = [("[" if i == 0 else ",\r\n") + json.dumps(c) for i, c in enumerate(chunks)]
    events = [piece.encode() for piece in pieces] + [b"]"]
    malformed = b',\r\n{"candidates": ['
    return event_stream(state, events, fault, malformed, media_type="application/json")


async def _embed(
    request: Request, state: SimulatorState, model: str, body: dict[str, Any]
) -> Response:
    dim, text = _embedding_request(state, body)
    fault = state.take_fault(request.scope["path"], model)
    if (early := await before_first_byte(state, fault, error_response, stream=False)) is not None:
        return early
    return json_response({"embedding": {"values": embed(text, dim)}})


async def _batch_embed(
    request: Request, state: SimulatorState, model: str, body: dict[str, Any]
) -> Response:
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise BadRequest("* BatchEmbedContentsRequest.requests: requests is not specified")
    inputs = [_embedding_request(state, r if isinstance(r, dict) else {}) for r in requests]
    fault = state.take_fault(request.scope["path"], model)
    if (early := await before_first_byte(state, fault, error_response, stream=False)) is not None:
        return early
    return json_response({"embeddings": [{"values": embed(text, dim)} for dim, text in inputs]})


async def _count_tokens(
    request: Request, state: SimulatorState, model: str, body: dict[str, Any]
) -> Response:
    inner = body.get("generateContentRequest")
    prompt = _prompt(model, inner if isinstance(inner, dict) else body)
    return json_response({"totalTokens": prompt.prompt_tokens})


_ACTIONS = {
    "generateContent": _generate,
    "streamGenerateContent": _generate,
    "embedContent": _embed,
    "batchEmbedContents": _batch_embed,
    "countTokens": _count_tokens,
}

routes = [Route("/v1beta/models/{model_action:path}", model_action, methods=["POST"])]


def _deny(request: Request, state: SimulatorState) -> Response | None:
    if state.settings.api_key is None:
        return None
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if key is None:
        return error_response(
            403, "Method doesn't allow unregistered callers. Please use an API key."
        )
    if not state.key_ok(key):
        return error_response(400, "API key not valid. Please pass a valid API key.")
    return None


def _get(body: dict[str, Any], camel: str, snake: str) -> Any:
    return body.get(camel, body.get(snake))


def _prompt(model: str, body: dict[str, Any]) -> Prompt:
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        raise BadRequest("* GenerateContentRequest.contents: contents is not specified")
    if not all(isinstance(c, dict) for c in contents):
        raise BadRequest("* GenerateContentRequest.contents: each content must be an object")
    system = _get(body, "systemInstruction", "system_instruction")
    texts = [_text(system)] + [_text(c) for c in contents]
    user_text = next(
        (_text(c, calls=False) for c in reversed(contents) if c.get("role", "user") == "user"),
        "",
    )
    config = _get(body, "generationConfig", "generation_config") or {}
    prompt = Prompt(
        model=model,
        user_text=user_text,
        prompt_tokens=count_tokens(*texts),
        tool_result=_tool_result(contents[-1]),
        tools=_tools(body.get("tools")),
        max_tokens=_int(config, "maxOutputTokens", "max_output_tokens", None),
        stop=[s for s in _get(config, "stopSequences", "stop_sequences") or [] if str(s) == s],
        n=_int(config, "candidateCount", "candidate_count", 1) or 1,
    )
    schema = _get(config, "responseJsonSchema", "response_json_schema") or _get(
        config, "responseSchema", "response_schema"
    )
    if schema:
        prompt.json_schema = schema
    elif _get(config, "responseMimeType", "response_mime_type") == "application/json":
        prompt.json_mode = True
    tool_config = _get(body, "toolConfig", "tool_config") or {}
    calling = _get(tool_config, "functionCallingConfig", "function_calling_config") or {}
    if calling.get("mode") == "NONE":
        prompt.tool_mode = "none"
    allowed = _get(calling, "allowedFunctionNames", "allowed_function_names") or []
    if calling.get("mode") == "ANY" and allowed:
        prompt.forced_tool = allowed[0]
    return prompt


def _int(config: dict[str, Any], camel: str, snake: str, default: int | None) -> int | None:
    value = _get(config, camel, snake)
    if value is None:
        return default
    if not isinstance(value, int) or value < 0:
        raise BadRequest(f"* GenerateContentRequest.generation_config.{snake}: must be >= 0")
    return value


def _tools(tools: Any) -> list[Tool]:
    found = []
    for entry in tools if isinstance(tools, list) else []:
        declarations = _get(entry, "functionDeclarations", "function_declarations") or []
        for fn in declarations:
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise BadRequest("* GenerateContentRequest.tools: a function needs a name")
            schema = _get(fn, "parametersJsonSchema", "parameters_json_schema")
            found.append(Tool(fn["name"], schema or fn.get("parameters") or {}))
    return found


def _text(content: Any, *, calls: bool = True) -> str:
    """The text of a content (`{"parts": [...]}`); function calls/results as JSON."""
    parts = content.get("parts") if isinstance(content, dict) else None
    texts = []
    for part in parts if isinstance(parts, list) else []:
        if not isinstance(part, dict):
            continue
        if "text" in part:
            texts.append(str(part["text"]))
        elif calls and "functionCall" in part:
            texts.append(json.dumps(part["functionCall"].get("args", {})))
        elif calls and "functionResponse" in part:
            texts.append(json.dumps(part["functionResponse"].get("response", {})))
    return " ".join(texts)


def _tool_result(content: dict[str, Any]) -> str | None:
    parts = content.get("parts")
    results = [
        json.dumps(part["functionResponse"].get("response", {}))
        for part in (parts if isinstance(parts, list) else [])
        if isinstance(part, dict) and isinstance(part.get("functionResponse"), dict)
    ]
    return " ".join(results) if results else None


def _embedding_request(state: SimulatorState, body: dict[str, Any]) -> tuple[int, str]:
    text = _text(body.get("content"))
    if not text:
        raise BadRequest("* EmbedContentRequest.content: content is not specified")
    dim = _get(body, "outputDimensionality", "output_dimensionality")
    return int(dim or state.settings.embedding_dim), text


def _parts(completion: Completion) -> list[dict[str, Any]]:
    call = completion.tool_call
    if call is None:
        return [{"text": completion.text}]
    return [{"functionCall": {"name": call.name, "args": call.arguments}}]


def _streamed_parts(completion: Completion) -> list[tuple[list[dict[str, Any]], bool]]:
    """The parts of each streamed chunk of one candidate, and whether it is the last."""
    pieces = completion.pieces()
    if completion.tool_call is not None or not pieces:
        return [(_parts(completion), True)]
    return [([{"text": piece}], i == len(pieces) - 1) for i, piece in enumerate(pieces)]


def _candidate(
    completion: Completion, parts: list[dict[str, Any]], *, final: bool
) -> dict[str, Any]:
    content = {"role": "model", "parts": parts}
    candidate: dict[str, Any] = {"content": content, "index": completion.index}
    if final:
        candidate["finishReason"] = _FINISH[completion.finish]
    return candidate
