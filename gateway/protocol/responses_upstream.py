"""The canonical chat request as a native Responses API call (`POST {base}/responses`), and
the upstream's Response object back as a chat completion. Pure functions, no I/O; the
stream half is `responses_upstream_stream.py`.

Only requests that arrived on the gateway's own `/v1/responses` take this path
(`ResponsesChatRequest`), and only to a provider whose preset or config says
`responses_api: true`: the pipeline stays chat-shaped (output policy, cache, metering and
audit see a `ChatCompletion`), and the route turns it back into a Response as for any target.

The call always sends the whole conversation and `store: false`: the gateway keeps the
conversation state (`previous_response_id`) itself, the provider keeps nothing.

Lost in the round trip, each deliberately: the provider's own response and item ids (the
client sees the gateway's), reasoning items (encrypted or summarised reasoning is not
requested and, when sent anyway, skipped), annotations and logprobs. What chat cannot carry
but the native call does: `text.verbosity` (chat's `verbosity`), `reasoning.effort`
(`reasoning_effort`) and the cached / reasoning token counts of the usage.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.errors import UnsupportedParameter, UpstreamError
from gateway.protocol.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    ToolCall,
    Usage,
)

# Chat fields with a Responses name of their own (the rest below are refused when set).
_SAME_NAME = (
    "temperature",
    "top_p",
    "user",
    "parallel_tool_calls",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
)
_HANDLED = {
    *_SAME_NAME,
    "model",
    "messages",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "tools",
    "tool_choice",
    "response_format",
    "reasoning_effort",
    "verbosity",
}
_INCOMPLETE = {"max_output_tokens": "length", "content_filter": "content_filter"}


# --- request ----------------------------------------------------------------------------------


def chat_request_to_responses(req: ChatCompletionRequest, *, stream: bool) -> dict[str, Any]:
    """The body of `POST /responses` for a (conformed) chat request: the whole conversation
    as input items, `store: false`. Raises `UnsupportedParameter` for a chat field the
    Responses API has no place for (a request translated from `/v1/responses` carries none)."""
    for param in sorted(req.set_params() - _HANDLED):
        raise UnsupportedParameter(
            f"parameter {param!r} cannot be sent to the Responses API", param=param
        )
    body: dict[str, Any] = {
        "model": req.model,
        "input": [item for message in req.messages for item in _input_items(message)],
        "store": False,
        "stream": stream,
    }
    extra = req.model_extra or {}
    for name in _SAME_NAME:
        value = getattr(req, name) if name in type(req).model_fields else extra.get(name)
        if value is not None:
            body[name] = value
    limit = req.max_completion_tokens or req.max_tokens
    if limit is not None:
        body["max_output_tokens"] = limit
    if req.tools:
        body["tools"] = [_tool(tool.model_dump(exclude_none=True)) for tool in req.tools]
    if req.tool_choice is not None:
        body["tool_choice"] = _tool_choice(req.tool_choice)
    text: dict[str, Any] = {}
    if req.response_format is not None:
        text["format"] = _text_format(req.response_format.model_dump(exclude_none=True))
    if extra.get("verbosity") is not None:
        text["verbosity"] = extra["verbosity"]
    if text:
        body["text"] = text
    if extra.get("reasoning_effort") is not None:
        body["reasoning"] = {"effort": extra["reasoning_effort"]}
    return body


def _input_items(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "function_call_output",
                "call_id": message.tool_call_id or "",
                "output": message.text(),
            }
        ]
    if message.role == "function":
        raise UnsupportedParameter(
            "messages of the legacy role 'function' cannot be sent to the Responses API",
            param="messages",
        )
    items: list[dict[str, Any]] = []
    if message.role == "assistant":
        text = message.text() or message.refusal or ""
        if text:
            items.append({"type": "message", "role": "assistant", "content": text})
        items += [
            {
                "type": "function_call",
                "call_id": call.id or "",
                "name": call.function.name or "",
                "arguments": call.function.arguments or "",
            }
            for call in message.tool_calls or []
        ]
        return items
    content: str | list[dict[str, Any]]
    if message.content is None or isinstance(message.content, str):
        content = message.content or ""
    else:
        content = [_input_part(part.model_dump(exclude_none=True)) for part in message.content]
    return [{"type": "message", "role": message.role, "content": content}]


def _input_part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "input_text", "text": part.get("text") or ""}
    image = part.get("image_url")
    if kind == "image_url" and isinstance(image, dict) and image.get("url"):
        out: dict[str, Any] = {"type": "input_image", "image_url": image["url"]}
        out["detail"] = image.get("detail") or "auto"
        return out
    raise UnsupportedParameter(
        f"content parts of type {kind!r} cannot be sent to the Responses API", param="messages"
    )


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = tool["function"]
    out: dict[str, Any] = {"type": "function", "name": function["name"]}
    for key in ("description", "parameters", "strict"):
        if function.get(key) is not None:
            out[key] = function[key]
    out.setdefault("parameters", {"type": "object", "properties": {}})
    return out


def _tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        return choice
    name = (choice.get("function") or {}).get("name")
    if choice.get("type") == "function" and isinstance(name, str):
        return {"type": "function", "name": name}
    raise UnsupportedParameter(
        f"tool_choice {choice!r} cannot be sent to the Responses API", param="tool_choice"
    )


def _text_format(response_format: dict[str, Any]) -> dict[str, Any]:
    kind = response_format.get("type")
    if kind == "json_schema":
        return {"type": "json_schema", **(response_format.get("json_schema") or {})}
    return {"type": kind}


# --- response ---------------------------------------------------------------------------------


def response_to_chat(data: Any, *, model: str) -> ChatCompletion:
    """The chat completion of an upstream Response object: its text (refusals included) as
    the message, each `function_call` item as a tool call, the finish reason from `status`
    and `incomplete_details`, and the usage with cached and reasoning tokens. Raises
    `UpstreamError` for a failed or unfinished response, or one not in the Responses shape."""
    if not isinstance(data, dict) or data.get("object") != "response":
        raise UpstreamError("the upstream's answer is not a Responses API response object")
    status = data.get("status")
    if status == "failed":
        raise UpstreamError(f"the upstream response failed: {_error_text(data.get('error'))}")
    if status not in ("completed", "incomplete"):
        raise UpstreamError(f"the upstream response is {status!r}, not finished")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for item in data.get("output") or []:
        if not isinstance(item, dict):
            raise UpstreamError("the upstream response has an output item that is not an object")
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict):
                    texts.append(str(part.get("text") or part.get("refusal") or ""))
        elif item.get("type") == "function_call":
            calls.append(
                ToolCall(
                    id=str(item.get("call_id") or ""),
                    function=FunctionCall(
                        name=str(item.get("name") or ""),
                        arguments=str(item.get("arguments") or ""),
                    ),
                )
            )
        # Reasoning items (and any other kind) are not part of a chat answer: dropped.
    message = ChatMessage(role="assistant", content="".join(texts) if texts or not calls else None)
    if calls:
        message.tool_calls = calls
    return ChatCompletion(
        id=f"chatcmpl-{data.get('id') or 'responses'}",
        created=_int(data.get("created_at")) or int(time.time()),
        model=model,
        choices=[
            ChatChoice(
                index=0,
                message=message,
                finish_reason=finish_reason(status, data.get("incomplete_details"), bool(calls)),
            )
        ],
        usage=chat_usage(data.get("usage")),
    )


def finish_reason(status: Any, incomplete: Any, called: bool) -> str:
    """Chat's finish reason for a finished response's status and incomplete details."""
    if status == "incomplete":
        reason = incomplete.get("reason") if isinstance(incomplete, dict) else None
        return _INCOMPLETE.get(str(reason), "length")
    return "tool_calls" if called else "stop"


def chat_usage(usage: Any) -> Usage | None:
    """Responses usage as chat usage; cached and reasoning tokens kept in the details."""
    if not isinstance(usage, dict):
        return None
    prompt = _int(usage.get("input_tokens"))
    completion = _int(usage.get("output_tokens"))
    cached = _int((usage.get("input_tokens_details") or {}).get("cached_tokens"))
    reasoning = _int((usage.get("output_tokens_details") or {}).get("reasoning_tokens"))
    return Usage.model_validate(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": _int(usage.get("total_tokens")) or prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
    )


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('code') or 'error'}: {error.get('message') or 'no message'}"
    return "no error given"
