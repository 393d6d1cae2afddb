"""Anthropic Messages clients onto the canonical OpenAI chat format, and back.

The gateway's `POST /v1/messages` route lets Anthropic SDK users call any configured model:
the request becomes a `ChatCompletionRequest`, and the answer becomes an Anthropic `Message`
(a stream becomes Anthropic's event sequence in `anthropic_convert_stream.py`). Pure
functions, no I/O.

Lossy points, each deliberate:
- A list-of-blocks `system` is joined with blank lines into one system message.
- `thinking` / `redacted_thinking` blocks in assistant history are dropped: no other model can
  use them, and Anthropic itself strips earlier turns' thinking from the context.
- A tool_result's `is_error: true` becomes an `Error: ` prefix on the tool message, since
  OpenAI tool messages have no error flag.
- Unknown top-level request fields are carried as extra fields, so the chosen upstream
  accepts or rejects them (never a silent drop).
- `stop_sequence` is never reported: OpenAI does not say which stop sequence matched, so
  a stop is reported as `end_turn`.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from gateway.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from gateway.protocol.anthropic import (
    ImageBlock,
    InputMessage,
    Message,
    MessagesRequest,
    StopReason,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
    new_tool_use_id,
)
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionCall,
    StreamOptions,
    ToolCall,
)
from gateway.protocol.openai import (
    Usage as ChatUsage,
)

_STOP_REASONS: dict[str, StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_DROPPED_BLOCKS = {"thinking", "redacted_thinking"}
_MAPPED_FIELDS = {
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
}


# --- request ----------------------------------------------------------------------------------


def messages_to_chat_request(req: MessagesRequest) -> ChatCompletionRequest:
    """The canonical chat request for an Anthropic Messages request.

    Raises `UnsupportedParameter` for what chat cannot express (server tools, documents,
    images inside tool results, more than four stop sequences).
    """
    messages: list[ChatMessage] = []
    if req.system:
        system = req.system if isinstance(req.system, str) else _join_system(req.system)
        messages.append(ChatMessage(role="system", content=system))
    for message in req.messages:
        messages.extend(_chat_messages(message))

    fields: dict[str, Any] = {"model": req.model, "messages": messages}
    fields["max_tokens"] = req.max_tokens
    if req.stop_sequences:
        if len(req.stop_sequences) > 4:
            raise UnsupportedParameter(
                "at most 4 stop_sequences can be sent to this model", param="stop_sequences"
            )
        fields["stop"] = list(req.stop_sequences)
    for name in ("temperature", "top_p", "top_k"):
        if getattr(req, name) is not None:
            fields[name] = getattr(req, name)
    if req.stream:
        fields["stream"] = True
        fields["stream_options"] = StreamOptions(include_usage=True)
    if req.tools:
        fields["tools"] = [_chat_tool(tool.model_dump(exclude_none=True)) for tool in req.tools]
    if req.tool_choice is not None:
        choice = req.tool_choice
        if choice.type == "tool":
            if not choice.name:
                raise InvalidRequest("tool_choice of type 'tool' needs a name", param="tool_choice")
            fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
        if choice.disable_parallel_tool_use is not None and choice.type != "none":
            fields["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    if req.metadata is not None and req.metadata.user_id:
        fields["user"] = req.metadata.user_id
    # Fields chat has no name for travel as extras: the upstream accepts or refuses them.
    for name, value in (req.model_extra or {}).items():
        if name not in _MAPPED_FIELDS:
            fields[name] = value
    try:
        return ChatCompletionRequest(**fields)
    except ValidationError as exc:
        raise InvalidRequest(f"cannot translate the request: {exc.errors()[0]['msg']}") from None


def _join_system(blocks: list[TextBlock]) -> str:
    return "\n\n".join(block.text for block in blocks)


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") not in (None, "custom"):
        raise UnsupportedParameter(
            f"server tool {tool.get('type')!r} is only available on Anthropic models",
            param="tools",
        )
    function: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _chat_messages(message: InputMessage) -> list[ChatMessage]:
    if isinstance(message.content, str):
        return [ChatMessage(role=message.role, content=message.content)]
    if message.role == "assistant":
        return [_assistant_message(message.content)]
    # Tool results answer the previous assistant turn, so they come first, as tool messages.
    results = [b for b in message.content if isinstance(b, ToolResultBlock)]
    tool_messages = [_tool_message(block) for block in results]
    parts = [_user_part(b) for b in message.content if not isinstance(b, ToolResultBlock)]
    if parts:
        tool_messages.append(ChatMessage(role="user", content=parts))
    return tool_messages


def _assistant_message(blocks: list[Any]) -> ChatMessage:
    text: list[str] = []
    calls: list[ToolCall] = []
    for block in blocks:
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolUseBlock):
            arguments = json.dumps(block.input, ensure_ascii=False)
            calls.append(
                ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments))
            )
        elif block.type not in _DROPPED_BLOCKS:
            raise UnsupportedParameter(
                f"assistant content blocks of type {block.type!r} cannot be sent to this model",
                param="messages",
            )
    content = "".join(text) if text or not calls else None
    return ChatMessage(role="assistant", content=content, tool_calls=calls or None)


def _tool_message(block: ToolResultBlock) -> ChatMessage:
    if block.content is None:
        text = ""
    elif isinstance(block.content, str):
        text = block.content
    else:
        pieces = []
        for part in block.content:
            if not isinstance(part, TextBlock):
                raise UnsupportedParameter(
                    f"tool_result content of type {part.type!r} cannot be sent to this model",
                    param="messages",
                )
            pieces.append(part.text)
        text = "\n".join(pieces)
    if block.is_error:
        text = f"Error: {text}"
    return ChatMessage(role="tool", tool_call_id=block.tool_use_id, content=text)


def _user_part(block: Any) -> ContentPart:
    if isinstance(block, TextBlock):
        return ContentPart(type="text", text=block.text)
    if isinstance(block, ImageBlock):
        source = block.source
        if source.type == "base64":
            url = f"data:{source.media_type};base64,{source.data}"
        else:
            url = source.url
        return ContentPart.model_validate({"type": "image_url", "image_url": {"url": url}})
    raise UnsupportedParameter(
        f"user content blocks of type {block.type!r} cannot be sent to this model",
        param="messages",
    )


# --- whole response ---------------------------------------------------------------------------


def chat_to_message(resp: ChatCompletion, *, model: str | None = None) -> Message:
    """The Anthropic message for a chat completion's first choice.

    `model` overrides the upstream's model name (the route reports the alias the client used).
    Raises `UpstreamError` when a tool call's arguments are not a JSON object.
    """
    if not resp.choices:
        raise UpstreamError("the upstream answered with no choices")
    choice = resp.choices[0]
    content: list[Any] = []
    text = choice.message.text()
    if text:
        content.append(TextBlock(text=text))
    if choice.message.refusal:
        content.append(TextBlock(text=choice.message.refusal))
    for call in choice.message.tool_calls or []:
        content.append(
            ToolUseBlock(
                id=call.id or new_tool_use_id(),
                name=call.function.name or "",
                input=_tool_input(call.function.arguments),
            )
        )
    stop_reason = stop_reason_of(choice.finish_reason)
    if choice.message.refusal and choice.finish_reason in (None, "stop"):
        stop_reason = "refusal"
    return Message(
        id=message_id(resp.id),
        model=model or resp.model,
        content=content,
        stop_reason=stop_reason,
        usage=anthropic_usage(resp.usage),
    )


def stop_reason_of(finish_reason: str | None) -> StopReason:
    return _STOP_REASONS.get(finish_reason or "stop", "end_turn")


def _tool_input(arguments: str | None) -> dict[str, Any]:
    if not arguments or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        raise UpstreamError("the model's tool call arguments are not valid JSON") from None
    if not isinstance(value, dict):
        raise UpstreamError("the model's tool call arguments are not a JSON object")
    return value


def anthropic_usage(usage: ChatUsage | None) -> Usage:
    if usage is None:
        return Usage()
    cached = _cached_tokens(usage)
    # Anthropic's input_tokens excludes cache reads; OpenAI's prompt_tokens includes them.
    return Usage(
        input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens,
        cache_read_input_tokens=cached or None,
    )


def _cached_tokens(usage: ChatUsage) -> int:
    details = (usage.model_extra or {}).get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        return min(int(details["cached_tokens"]), usage.prompt_tokens)
    return 0


def message_id(upstream_id: str) -> str:
    """An Anthropic-style id (`msg_...`) that still names the upstream's answer."""
    if upstream_id.startswith("msg_"):
        return upstream_id
    return f"msg_{upstream_id.removeprefix('chatcmpl-')}"
