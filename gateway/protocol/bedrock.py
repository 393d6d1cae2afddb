"""Canonical chat requests onto Bedrock's Converse API, and its answers back. Pure functions.

`POST /model/{modelId}/converse` (and `/converse-stream`, see `bedrock_stream`) takes one
body for every model family on Bedrock. Lossy or refused mappings, each deliberate:
- `system` and `developer` messages become the top-level `system` blocks.
- Images must be data: URLs (sent as bytes) or s3:// URLs (an `s3Location`); Bedrock
  fetches nothing over http(s), so those are refused.
- A tool result is a `json` block when its content is a JSON object, else a `text` block;
  consecutive results (and user text) share one user turn, as Converse wants turns to alternate.
- `tool_choice` auto / required / a named function become `auto` / `any` / `tool`; "none"
  sends no tools (refused when the history holds tool calls, which need `toolConfig`).
- `top_k` (an extra field) goes into `additionalModelRequestFields`; Converse's own
  top-level fields given as extras (`additionalModelRequestFields`, `guardrailConfig`,
  `performanceConfig`, `requestMetadata`, ...) pass on; any other extra field is refused
  (Converse rejects unknown fields with an opaque validation error).
- Answers: `reasoningContent` comes back as `reasoning_content`; stop reasons end_turn and
  stop_sequence are `stop`, max_tokens and model_context_window_exceeded `length`, tool_use
  `tool_calls`, guardrail_intervened and content_filtered `content_filter`.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from gateway.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from gateway.protocol.anthropic_upstream import chat_usage
from gateway.protocol.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    ToolCall,
    Usage,
)

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
CONVERSE_FIELDS = frozenset(
    {
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "guardrailConfig",
        "performanceConfig",
        "promptVariables",
        "requestMetadata",
        "serviceTier",
        "outputConfig",
    }
)
_IMAGE_FORMATS = {
    "image/png": "png",
    "image/jpeg": "jpeg",
    "image/gif": "gif",
    "image/webp": "webp",
}


# --- request ----------------------------------------------------------------------------------


def chat_request_to_converse(req: ChatCompletionRequest) -> dict[str, Any]:
    """The Converse body for a chat request (the model goes in the URL)."""
    system, messages = _messages(req.messages)
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = [{"text": text} for text in system]
    config: dict[str, Any] = {}
    max_tokens = req.max_completion_tokens or req.max_tokens
    if max_tokens is not None:
        config["maxTokens"] = max_tokens
    if req.temperature is not None:
        config["temperature"] = req.temperature
    if req.top_p is not None:
        config["topP"] = req.top_p
    if req.stop is not None:
        config["stopSequences"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if config:
        body["inferenceConfig"] = config
    tool_config = _tool_config(req, history_has_tools=_has_tool_blocks(messages))
    if tool_config:
        body["toolConfig"] = tool_config
    extras = dict(req.model_extra or {})
    if "top_k" in extras:
        additional = dict(extras.pop("additionalModelRequestFields", None) or {})
        additional["top_k"] = extras.pop("top_k")
        extras["additionalModelRequestFields"] = additional
    unknown = sorted(set(extras) - CONVERSE_FIELDS)
    if unknown:
        raise UnsupportedParameter(
            f"parameter {unknown[0]!r} is not supported by Bedrock's Converse API", param=unknown[0]
        )
    body.update(extras)
    return body


def _messages(messages: list[ChatMessage]) -> tuple[list[str], list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            if message.text():
                system.append(message.text())
            continue
        if message.role == "function":
            raise UnsupportedParameter(
                "legacy 'function' messages are not supported; use tool messages",
                param="messages",
            )
        if message.role == "tool":
            role, blocks = "user", [_tool_result(message)]
        elif message.role == "user":
            role, blocks = "user", _user_blocks(message)
        else:
            role, blocks = "assistant", _assistant_blocks(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _user_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if not isinstance(message.content, list):
        return [{"text": message.text()}] if message.text() else []
    blocks = []
    for part in message.content:
        data = part.model_dump(exclude_none=True)
        if data.get("type") == "text":
            blocks.append({"text": data.get("text") or ""})
        elif data.get("type") == "image_url":
            image = data.get("image_url")
            blocks.append(_image(image.get("url") if isinstance(image, dict) else image))
        else:
            raise UnsupportedParameter(
                f"content parts of type {data.get('type')!r} are not supported by Bedrock",
                param="messages",
            )
    return blocks


def _image(url: Any) -> dict[str, Any]:
    if isinstance(url, str) and url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or mime not in _IMAGE_FORMATS:
            raise InvalidRequest(
                "images for Bedrock must be base64 data: URLs of png, jpeg, gif or webp",
                param="messages",
            )
        return {"image": {"format": _IMAGE_FORMATS[mime], "source": {"bytes": data}}}
    if isinstance(url, str) and url.startswith("s3://"):
        extension = url.rsplit(".", 1)[-1].lower().replace("jpg", "jpeg")
        if extension not in _IMAGE_FORMATS.values():
            raise InvalidRequest("cannot tell the image format of this s3:// URL", param="messages")
        return {"image": {"format": extension, "source": {"s3Location": {"uri": url}}}}
    raise InvalidRequest("Bedrock takes images as data: or s3:// URLs", param="messages")


def _assistant_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = message.text() or message.refusal
    if text:
        blocks.append({"text": text})
    for call in message.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            raise InvalidRequest(
                "an assistant tool call's arguments are not valid JSON", param="messages"
            ) from None
        blocks.append(
            {
                "toolUse": {
                    "toolUseId": call.id or f"tooluse_{uuid.uuid4().hex[:22]}",
                    "name": call.function.name,
                    "input": arguments,
                }
            }
        )
    return blocks


def _tool_result(message: ChatMessage) -> dict[str, Any]:
    if not message.tool_call_id:
        raise InvalidRequest("a tool message needs its tool_call_id", param="messages")
    text = message.text()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    content = [{"json": value}] if isinstance(value, dict) else [{"text": text}]
    return {"toolResult": {"toolUseId": message.tool_call_id, "content": content}}


def _has_tool_blocks(turns: list[dict[str, Any]]) -> bool:
    return any("toolUse" in b or "toolResult" in b for t in turns for b in t["content"])


def _tool_config(req: ChatCompletionRequest, *, history_has_tools: bool) -> dict[str, Any]:
    if not req.tools:
        return {}
    choice = req.tool_choice
    if choice == "none":
        if history_has_tools:
            raise UnsupportedParameter(
                "Bedrock cannot be told not to call tools in a conversation that used them",
                param="tool_choice",
            )
        return {}
    tools = []
    for tool in req.tools:
        spec: dict[str, Any] = {
            "name": tool.function.name,
            "inputSchema": {"json": tool.function.parameters or {"type": "object"}},
        }
        if tool.function.description:
            spec["description"] = tool.function.description
        tools.append({"toolSpec": spec})
    config: dict[str, Any] = {"tools": tools}
    if choice == "required":
        config["toolChoice"] = {"any": {}}
    elif choice == "auto":
        config["toolChoice"] = {"auto": {}}
    elif isinstance(choice, dict):
        function = choice.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str):
            raise InvalidRequest("tool_choice must name a function", param="tool_choice")
        config["toolChoice"] = {"tool": {"name": name}}
    elif choice is not None:
        raise InvalidRequest(f"unknown tool_choice {choice!r}", param="tool_choice")
    return config


# --- answer -----------------------------------------------------------------------------------


def stop_reason(reason: Any, *, tool_calls: bool) -> str:
    """The OpenAI finish reason for a Converse stop reason."""
    finish = STOP_REASONS.get(str(reason), "stop")
    return "tool_calls" if tool_calls and finish == "stop" else finish


def converse_usage(data: Any) -> Usage:
    """OpenAI usage from Converse's `usage` (cache reads and writes count as prompt tokens)."""
    data = data if isinstance(data, dict) else {}
    return chat_usage(
        int(data.get("inputTokens") or 0),
        int(data.get("outputTokens") or 0),
        int(data.get("cacheReadInputTokens") or 0),
        int(data.get("cacheWriteInputTokens") or 0),
    )


def converse_to_chat(body: Any, *, model: str) -> ChatCompletion:
    """The chat completion for a Converse answer; `UpstreamError` if it is not one."""
    output = body.get("output") if isinstance(body, dict) else None
    message = output.get("message") if isinstance(output, dict) else None
    if not isinstance(message, dict) or not isinstance(message.get("content"), list):
        raise UpstreamError("the upstream answered in a shape that is not Converse's")
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    for block in message["content"]:
        if not isinstance(block, dict):
            continue
        if "text" in block:
            text.append(str(block["text"]))
        elif isinstance(block.get("toolUse"), dict):
            use = block["toolUse"]
            calls.append(
                ToolCall(
                    id=use.get("toolUseId"),
                    function=FunctionCall(
                        name=use.get("name"),
                        arguments=json.dumps(use.get("input", {}), ensure_ascii=False),
                    ),
                )
            )
        elif isinstance(block.get("reasoningContent"), dict):
            reasoning_text = block["reasoningContent"].get("reasoningText") or {}
            reasoning.append(str(reasoning_text.get("text") or ""))
    fields: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(text) if text or not calls else None,
    }
    if calls:
        fields["tool_calls"] = [c.model_dump(exclude_none=True) for c in calls]
    if reasoning:
        fields["reasoning_content"] = "".join(reasoning)
    finish = stop_reason(body.get("stopReason"), tool_calls=bool(calls))
    return ChatCompletion(
        model=model,
        choices=[ChatChoice(message=ChatMessage.model_validate(fields), finish_reason=finish)],
        usage=converse_usage(body.get("usage")),
    )
