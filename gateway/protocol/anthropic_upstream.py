"""The canonical OpenAI chat format onto Anthropic's Messages API, and back (the adapter side).

Pure functions, no I/O; streams are in `anthropic_upstream_stream`. Lossy or refused
mappings, each deliberate:
- `system` and `developer` messages, wherever they are, become the top-level `system`.
- Message `name`s are dropped (Anthropic has no per-message names).
- `temperature` above 1 is refused (`UnsupportedParameter`): Anthropic's range is 0..1 and
  neither clamping nor rescaling would give the client what it asked for.
- `n` > 1, `seed`, `logprobs`, `top_logprobs`, `logit_bias` and non-zero penalties are
  refused: Anthropic has no equivalent.
- `response_format` json_object / json_schema is answered with one forced tool
  (`JSON_TOOL_NAME`) whose input schema is the requested schema (any object for
  json_object); the tool's input comes back as the message content and the finish reason is
  `stop`. It cannot be combined with the client's own tools (`UnsupportedParameter`), and a
  json_schema whose root is not an object is refused.
- Tool `strict` flags are dropped: the schema is still sent and followed, just not enforced.
- Thinking blocks in answers come back as `reasoning_content`; in requests they are dropped.
- Fields chat does not name (e.g. `top_k`, `thinking`, `metadata`) are passed on as they are.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from gateway.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from gateway.protocol.anthropic import (
    GenericBlock,
    Message,
    TextBlock,
    ToolUseBlock,
)
from gateway.protocol.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    FunctionCall,
    ResponseFormat,
    ToolCall,
    Usage,
)

JSON_TOOL_NAME = "raygate_json_response"
"""The forced tool that carries `response_format` JSON answers; clients cannot define it."""

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_NO_OP_VALUES: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
}
_REFUSED = ("n", "seed", "logprobs", "top_logprobs", "logit_bias", "presence_penalty",
            "frequency_penalty")  # fmt: skip


# --- request ----------------------------------------------------------------------------------


def chat_request_to_anthropic(
    req: ChatCompletionRequest, *, default_max_tokens: int = 4096
) -> dict[str, Any]:
    """The `POST /v1/messages` body for a chat request.

    Raises `UnsupportedParameter` for parameters Anthropic cannot honour (see the module
    docstring) and `InvalidRequest` for history it cannot express.
    """
    for param in _REFUSED:
        value = getattr(req, param)
        if value is not None and value != _NO_OP_VALUES.get(param, object()):
            raise UnsupportedParameter(
                f"parameter {param!r} is not supported by Anthropic models", param=param
            )
    if req.temperature is not None and req.temperature > 1:
        raise UnsupportedParameter(
            "Anthropic models accept a temperature between 0 and 1", param="temperature"
        )
    system, messages = _messages(req.messages)
    body: dict[str, Any] = {
        "model": req.model,
        "max_tokens": req.max_completion_tokens or req.max_tokens or default_max_tokens,
        "messages": messages,
    }
    if system:
        body["system"] = system[0]["text"] if len(system) == 1 else system
    if req.stop is not None:
        body["stop_sequences"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stream:
        body["stream"] = True
    extras = dict(req.model_extra or {})
    if req.user:
        metadata = extras.pop("metadata", None)
        body["metadata"] = {**(metadata if isinstance(metadata, dict) else {}), "user_id": req.user}
    body.update(_tools(req))
    body.update(extras)
    return body


def _messages(messages: list[ChatMessage]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            if message.text():
                system.append({"type": "text", "text": message.text()})
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
        # Anthropic wants alternating turns: consecutive tool results (and the user text
        # that may follow them) become one user message.
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _user_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"type": "text", "text": message.content}] if message.content else []
    return [_part_block(part.model_dump(exclude_none=True)) for part in message.content or []]


def _part_block(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise InvalidRequest("an image_url part needs a url", param="messages")
        return {"type": "image", "source": _image_source(url)}
    if kind == "file":
        file = part.get("file") or {}
        data = file.get("file_data") if isinstance(file, dict) else None
        if isinstance(data, str) and data.startswith("data:application/pdf;base64,"):
            source = {
                "type": "base64",
                "media_type": "application/pdf",
                "data": data.partition(",")[2],
            }
            return {"type": "document", "source": source}
    raise UnsupportedParameter(
        f"content parts of type {kind!r} are not supported by Anthropic models", param="messages"
    )


def _image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type:
            raise InvalidRequest("image data URLs must be base64 encoded", param="messages")
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise InvalidRequest("an image URL must be http(s) or a data: URL", param="messages")


def _assistant_blocks(message: ChatMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if isinstance(message.content, str):
        if message.content:
            blocks.append({"type": "text", "text": message.content})
    else:
        for part in message.content or []:
            text = part.text if part.type == "text" else getattr(part, "refusal", None)
            if text:
                blocks.append({"type": "text", "text": text})
    if message.refusal:
        blocks.append({"type": "text", "text": message.refusal})
    for call in message.tool_calls or []:
        try:
            arguments = json.loads(call.function.arguments or "{}")
        except ValueError:
            raise InvalidRequest(
                "an assistant tool call's arguments are not valid JSON", param="messages"
            ) from None
        if not isinstance(arguments, dict):
            raise InvalidRequest(
                "an assistant tool call's arguments must be a JSON object", param="messages"
            )
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.function.name, "input": arguments}
        )
    return blocks


def _tool_result(message: ChatMessage) -> dict[str, Any]:
    if not message.tool_call_id:
        raise InvalidRequest("a tool message needs a tool_call_id", param="messages")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
    if isinstance(message.content, str) or message.content is None:
        block["content"] = message.content or ""
    else:
        block["content"] = [_part_block(p.model_dump(exclude_none=True)) for p in message.content]
    return block


def _tools(req: ChatCompletionRequest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if req.response_format is not None and req.response_format.type != "text":
        if req.tools or req.tool_choice is not None:
            raise UnsupportedParameter(
                "response_format cannot be combined with tools on Anthropic models",
                param="response_format",
            )
        return _json_tool(req.response_format)
    if req.tools:
        tools = []
        for tool in req.tools:
            if tool.function.name == JSON_TOOL_NAME:
                raise InvalidRequest(f"the tool name {JSON_TOOL_NAME!r} is reserved", param="tools")
            entry: dict[str, Any] = {"name": tool.function.name}
            if tool.function.description:
                entry["description"] = tool.function.description
            entry["input_schema"] = tool.function.parameters or {"type": "object", "properties": {}}
            tools.append(entry)
        out["tools"] = tools
    choice = _tool_choice(req.tool_choice)
    if req.parallel_tool_calls is False and req.tools and (choice or {}).get("type") != "none":
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        out["tool_choice"] = choice
    return out


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        mapped = {"auto": "auto", "required": "any", "none": "none"}.get(choice)
        if mapped is None:
            raise InvalidRequest(f"unknown tool_choice {choice!r}", param="tool_choice")
        return {"type": mapped}
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    if choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequest("tool_choice must name a function", param="tool_choice")
    return {"type": "tool", "name": name}


def _json_tool(response_format: ResponseFormat) -> dict[str, Any]:
    spec = response_format.json_schema or {}
    schema = spec.get("schema") if response_format.type == "json_schema" else None
    schema = schema or {"type": "object"}
    if schema.get("type", "object") != "object":
        raise UnsupportedParameter(
            "Anthropic models can answer with a json_schema only when its root is an object",
            param="response_format",
        )
    description = spec.get("description") or "Answer with the requested JSON object."
    tool = {"name": JSON_TOOL_NAME, "description": description, "input_schema": schema}
    return {"tools": [tool], "tool_choice": {"type": "tool", "name": JSON_TOOL_NAME}}


# --- whole response ---------------------------------------------------------------------------


def anthropic_to_chat(body: dict[str, Any], *, model: str) -> ChatCompletion:
    """The chat completion for an Anthropic message; `UpstreamError` if it is not one."""
    try:
        message = Message.model_validate(body)
    except ValidationError:
        raise UpstreamError("the upstream answered in a shape that is not Anthropic's") from None
    text: list[str] = []
    reasoning: list[str] = []
    calls: list[ToolCall] = []
    json_answer: str | None = None
    for block in message.content:
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ToolUseBlock) and block.name == JSON_TOOL_NAME:
            json_answer = json.dumps(block.input, ensure_ascii=False)
        elif isinstance(block, ToolUseBlock):
            arguments = json.dumps(block.input, ensure_ascii=False)
            calls.append(
                ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments))
            )
        elif isinstance(block, GenericBlock) and block.type == "thinking":
            reasoning.append(str((block.model_extra or {}).get("thinking", "")))
    reply = ChatMessage(
        role="assistant",
        # A JSON answer is the tool's input alone: any text around it would break the JSON.
        content=json_answer
        if json_answer is not None
        else "".join(text)
        if text or not calls
        else None,
        tool_calls=calls or None,
    )
    if reasoning:
        reply = ChatMessage.model_validate(
            {**reply.wire(), "reasoning_content": "".join(reasoning)}
        )
    finish = finish_reason(message.stop_reason, json_answer=json_answer is not None)
    return ChatCompletion(
        id=message.id,
        model=model,
        choices=[ChatChoice(index=0, message=reply, finish_reason=finish)],
        usage=chat_usage(
            message.usage.input_tokens,
            message.usage.output_tokens,
            message.usage.cache_read_input_tokens or 0,
            message.usage.cache_creation_input_tokens or 0,
        ),
    )


def finish_reason(stop_reason: str | None, *, json_answer: bool) -> str:
    """The chat finish reason for an Anthropic stop reason (`json_answer`: the JSON tool ran)."""
    if json_answer and stop_reason == "tool_use":
        return "stop"
    return _FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def chat_usage(input_tokens: int, output_tokens: int, cache_read: int, cache_write: int) -> Usage:
    """Chat usage from Anthropic's counts, cache reads reported as cached prompt tokens."""
    # OpenAI's prompt_tokens include cached tokens; Anthropic reports them apart.
    prompt = input_tokens + cache_read + cache_write
    fields: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": output_tokens,
        "total_tokens": prompt + output_tokens,
    }
    if cache_read:
        fields["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return Usage.model_validate(fields)
