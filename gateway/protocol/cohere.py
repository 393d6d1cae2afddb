"""Canonical chat and embedding requests onto Cohere's v2 API (`/v2/chat`, `/v2/embed`), and
the whole answers back. Pure functions, no I/O; streams are in `cohere_stream`.

Lossy or refused mappings, each deliberate:
- `developer` messages are sent as `system`; message `name`s and `user` are dropped.
- `top_p` becomes `p`, `stop` `stop_sequences`, `top_k` (an extra field) `k`; penalties must be
  within Cohere's 0..1 (`UnsupportedParameter` otherwise, rather than a silent clamp).
- `tool_choice` "required" / "none" become REQUIRED / NONE; naming one function sends only
  that tool, with REQUIRED (the same effect). Tool `strict` flags are dropped.
- `response_format` json_object / json_schema become Cohere's `json_object` (with the schema).
- Answers: text items are the content, `thinking` items and the `tool_plan` come back as
  `reasoning_content`; finish reasons COMPLETE and STOP_SEQUENCE are `stop`, MAX_TOKENS
  `length`, TOOL_CALL `tool_calls`; ERROR and TIMEOUT raise.
- Embeddings: `input_type` (an extra field; default search_document, which v3+ models
  require), `dimensions` as `output_dimension`; float vectors, base64-encoded here if asked.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from gateway.errors import InvalidRequest, UnsupportedParameter, UpstreamError, UpstreamTimeout
from gateway.protocol.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    FunctionCall,
    ToolCall,
    Usage,
)

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
DEFAULT_INPUT_TYPE = "search_document"


# --- chat request -----------------------------------------------------------------------------


def chat_request_to_cohere(req: ChatCompletionRequest) -> dict[str, Any]:
    """The `POST /v2/chat` body for a chat request (without `stream`)."""
    body: dict[str, Any] = {"model": req.model, "messages": [_message(m) for m in req.messages]}
    max_tokens = req.max_completion_tokens or req.max_tokens
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    for field, name in (("temperature", "temperature"), ("top_p", "p"), ("seed", "seed")):
        if getattr(req, field) is not None:
            body[name] = getattr(req, field)
    for field in ("presence_penalty", "frequency_penalty"):
        value = getattr(req, field)
        if value is not None:
            if not 0 <= value <= 1:
                raise UnsupportedParameter(f"Cohere takes a {field} between 0 and 1", param=field)
            body[field] = value
    if req.logprobs:
        body["logprobs"] = True
    if req.stop is not None:
        body["stop_sequences"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    tools = [t.function for t in req.tools or []]
    if req.tool_choice is not None:
        tools, mode = _tool_choice(req.tool_choice, tools)
        if mode:
            body["tool_choice"] = mode
    if tools:
        body["tools"] = [
            {"type": "function", "function": f.model_dump(exclude_none=True, exclude={"strict"})}
            for f in tools
        ]
    if req.response_format is not None and req.response_format.type != "text":
        response_format: dict[str, Any] = {"type": "json_object"}
        schema = (req.response_format.json_schema or {}).get("schema")
        if req.response_format.type == "json_schema" and schema:
            response_format["json_schema"] = schema
        body["response_format"] = response_format
    extras = dict(req.model_extra or {})
    if "top_k" in extras:
        body["k"] = extras.pop("top_k")
    body.update(extras)
    return body


def _message(message: ChatMessage) -> dict[str, Any]:
    role = message.role
    if role == "function":
        raise UnsupportedParameter(
            "legacy 'function' messages are not supported; use tool messages", param="messages"
        )
    if role in ("system", "developer"):
        return {"role": "system", "content": message.text()}
    if role == "tool":
        if not message.tool_call_id:
            raise InvalidRequest("a tool message needs its tool_call_id", param="messages")
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text()}
    if role == "assistant":
        out: dict[str, Any] = {"role": "assistant"}
        text = message.text() or message.refusal
        if text:
            out["content"] = text
        if message.tool_calls:
            out["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.function.name, "arguments": call.function.arguments},
                }
                for call in message.tool_calls
            ]
        return out
    return {"role": "user", "content": _user_content(message)}


def _user_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if not isinstance(message.content, list):
        return message.text()
    parts: list[dict[str, Any]] = []
    for part in message.content:
        data = part.model_dump(exclude_none=True)
        if data.get("type") == "text":
            parts.append({"type": "text", "text": data.get("text") or ""})
        elif data.get("type") == "image_url":
            image = data.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            parts.append({"type": "image_url", "image_url": {"url": url}})
        else:
            raise UnsupportedParameter(
                f"content parts of type {data.get('type')!r} are not supported by Cohere",
                param="messages",
            )
    return parts


def _tool_choice(choice: str | dict[str, Any], tools: list[Any]) -> tuple[list[Any], str | None]:
    if choice == "auto":
        return tools, None
    if choice in ("required", "none"):
        return tools, str(choice).upper()
    function = choice.get("function") if isinstance(choice, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    chosen = [t for t in tools if t.name == name]
    if not chosen:
        raise InvalidRequest(f"tool_choice names no tool in tools: {name!r}", param="tool_choice")
    return chosen, "REQUIRED"


# --- chat answer ------------------------------------------------------------------------------


def finish_reason(reason: Any, *, where: str) -> str:
    """The OpenAI finish reason for Cohere's; raises for ERROR and TIMEOUT."""
    if reason == "TIMEOUT":
        raise UpstreamTimeout(f"{where} timed out while generating")
    if reason == "ERROR":
        raise UpstreamError(f"{where} failed while generating")
    return FINISH_REASONS.get(str(reason), "stop")


def usage(data: Any) -> Usage:
    """OpenAI usage from Cohere's (`tokens`, else `billed_units`)."""
    data = data if isinstance(data, dict) else {}
    counts = data.get("tokens") or data.get("billed_units") or {}
    prompt = int(counts.get("input_tokens") or 0)
    completion = int(counts.get("output_tokens") or 0)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def tool_call(data: Any) -> ToolCall:
    """An OpenAI tool call from Cohere's `{id, type, function: {name, arguments}}`."""
    function = data.get("function") or {}
    return ToolCall(
        id=data.get("id"),
        function=FunctionCall(name=function.get("name"), arguments=function.get("arguments") or ""),
    )


def cohere_to_chat(body: Any, *, model: str) -> ChatCompletion:
    """The chat completion for a `/v2/chat` answer; `UpstreamError` if it is not one."""
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict):
        raise UpstreamError("the upstream answered in a shape that is not Cohere's")
    finish = finish_reason(body.get("finish_reason"), where="the upstream")
    text: list[str] = []
    reasoning: list[str] = [message["tool_plan"]] if message.get("tool_plan") else []
    for item in message.get("content") or []:
        if item.get("type") == "text":
            text.append(item.get("text") or "")
        elif item.get("type") == "thinking":
            reasoning.append(item.get("thinking") or "")
    calls = [tool_call(c) for c in message.get("tool_calls") or []]
    fields: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
    }
    if calls:
        fields["tool_calls"] = [c.model_dump(exclude_none=True) for c in calls]
    if reasoning:
        fields["reasoning_content"] = "".join(reasoning)
    return ChatCompletion(
        id=f"chatcmpl-{body.get('id') or 'cohere'}",
        model=model,
        choices=[ChatChoice(message=ChatMessage.model_validate(fields), finish_reason=finish)],
        usage=usage(body.get("usage")),
    )


# --- embeddings -------------------------------------------------------------------------------


def embedding_request_to_cohere(req: EmbeddingRequest) -> dict[str, Any]:
    """The `POST /v2/embed` body; token-id inputs are refused."""
    inputs = [req.input] if isinstance(req.input, str) else req.input
    if not all(isinstance(text, str) for text in inputs):
        raise UnsupportedParameter("Cohere embeds text only, not token ids", param="input")
    extras = req.model_extra or {}
    body: dict[str, Any] = {
        "model": req.model,
        "texts": inputs,
        "input_type": extras.get("input_type", DEFAULT_INPUT_TYPE),
        "embedding_types": ["float"],
    }
    if req.dimensions is not None:
        body["output_dimension"] = req.dimensions
    if "truncate" in extras:
        body["truncate"] = extras["truncate"]
    return body


def cohere_to_embeddings(body: Any, *, request: EmbeddingRequest) -> EmbeddingResponse:
    """The OpenAI embedding list for a `/v2/embed` answer (float vectors)."""
    embeddings = body.get("embeddings") if isinstance(body, dict) else None
    vectors = embeddings.get("float") if isinstance(embeddings, dict) else embeddings
    expected = 1 if isinstance(request.input, str) else len(request.input)
    if not isinstance(vectors, list) or len(vectors) != expected:
        raise UpstreamError(f"the upstream did not send {expected} float embeddings")
    data = []
    for index, values in enumerate(vectors):
        vector: list[float] | str = values
        if request.encoding_format == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append(Embedding(index=index, embedding=vector))
    meta = body.get("meta") or {}
    tokens = int((meta.get("billed_units") or {}).get("input_tokens") or 0)
    usage_ = EmbeddingUsage(prompt_tokens=tokens, total_tokens=tokens)
    return EmbeddingResponse(data=data, model=request.model, usage=usage_)
