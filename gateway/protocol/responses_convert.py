"""OpenAI Responses requests onto the canonical chat request, and chat answers back into
response objects (a stream becomes the typed event sequence in `responses_stream.py`). Pure
functions, no I/O.

What is translated: `input` (a string, or messages with `input_text` / `output_text` /
`refusal` / `input_image` parts, `function_call` and `function_call_output` items),
`instructions` (the first system message), `tools` of type `function`, `tool_choice`,
`parallel_tool_calls`, `temperature`, `top_p`, `max_output_tokens`, `user`, `text.format`
(`response_format`), `text.verbosity` (`verbosity`) and `reasoning.effort` (`reasoning_effort`).
The chat request is a `ResponsesChatRequest`, so that a provider with the Responses API is
called natively (`responses_upstream.py`). The conversation of a
`previous_response_id` comes in as `history` (the stored items, oldest first).

What is refused with a 400 naming the parameter, never dropped: built-in tools (web_search,
file_search, computer use, code interpreter, MCP, ...), `background: true`, `include`,
`truncation: auto`, reasoning summaries, other input item kinds (`item_reference`,
reasoning items, ...), file and audio inputs, and any unknown top-level field.

Lossy points, each deliberate: a refusal comes back as output text; `metadata` and `store`
stay in the gateway (they are not sent upstream); `annotations` and `logprobs` are empty.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    ChatMessage,
    ContentPart,
    FunctionCall,
    StreamOptions,
    ToolCall,
)
from gateway.protocol.openai import Usage as ChatUsage
from gateway.protocol.responses import (
    FunctionCallItem,
    FunctionCallOutputItem,
    IncompleteDetails,
    InputContentPart,
    InputTokensDetails,
    MessageItem,
    OtherItem,
    OutputMessage,
    OutputText,
    OutputTokensDetails,
    Response,
    ResponsesRequest,
    ResponseUsage,
    new_item_id,
)

HistoryItem = MessageItem | FunctionCallItem | FunctionCallOutputItem | OutputMessage

# Unknown top-level fields that chat names the same way: sent on, the upstream decides.
_PASSED_ON = {"service_tier", "safety_identifier", "prompt_cache_key", "seed"}
_TEXT_PARTS = {"input_text", "output_text", "text"}
_TOOL_CHOICES = {"auto", "none", "required"}


# --- request ----------------------------------------------------------------------------------


def check_supported(req: ResponsesRequest) -> None:
    """Refuse, with a 400 naming the parameter, what the translation cannot honour."""
    if req.background:
        raise _unsupported("background", "background responses are not supported by this gateway")
    if req.include:
        raise _unsupported("include", f"include={req.include!r} is not supported by this gateway")
    if req.truncation not in (None, "disabled"):
        raise _unsupported("truncation", "only truncation 'disabled' is supported by this gateway")
    unsupported = [k for k, v in (req.reasoning or {}).items() if k != "effort" and v is not None]
    if unsupported:
        raise _unsupported(
            f"reasoning.{unsupported[0]}", "only reasoning.effort is supported by this gateway"
        )
    unknown = sorted(set(req.model_extra or {}) - _PASSED_ON)
    if unknown:
        raise _unsupported(unknown[0], f"the parameter {unknown[0]!r} is not supported here")
    for i, tool in enumerate(req.tools or []):
        kind = tool.get("type")
        if kind != "function":
            raise _unsupported(
                f"tools[{i}].type",
                f"the built-in tool {kind!r} is not supported by this gateway; "
                "only tools of type 'function' are",
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest("a function tool needs a name", param=f"tools[{i}].name")
    if isinstance(req.input, list):
        for i, item in enumerate(req.input):
            if isinstance(item, OtherItem):
                if item.type in ("message", "function_call", "function_call_output"):
                    raise InvalidRequest(
                        f"input[{i}] is not a valid {item.type} item", param=f"input[{i}]"
                    )
                raise _unsupported(
                    f"input[{i}].type",
                    f"input items of type {item.type!r} are not supported by this gateway",
                )


class ResponsesChatRequest(ChatCompletionRequest):
    """A chat request translated from `POST /v1/responses`: a provider with the Responses
    API (`responses_api`) sends it there natively; every other target takes it as chat.
    Only the gateway makes one (a client's JSON never validates into it), and it keeps its
    class through copies, Ray handles and parameter conforming."""


def responses_to_chat_request(
    req: ResponsesRequest, history: list[HistoryItem] | None = None
) -> ResponsesChatRequest:
    """The canonical chat request for a Responses request whose conversation so far (the
    items of its `previous_response_id` chain, oldest first) is `history`.

    Raises `UnsupportedParameter` / `InvalidRequest` (400s naming the parameter) for what
    chat cannot express; see the module docstring.
    """
    check_supported(req)
    messages: list[ChatMessage] = []
    if req.instructions:
        messages.append(ChatMessage(role="system", content=req.instructions))
    for item in [*(history or []), *req.input_items()]:
        _append(messages, item)
    if not messages:
        raise InvalidRequest("input must not be empty", param="input")

    fields: dict[str, Any] = {"model": req.model, "messages": messages}
    for name in ("temperature", "top_p", "user", "parallel_tool_calls"):
        if getattr(req, name) is not None:
            fields[name] = getattr(req, name)
    if req.max_output_tokens is not None:
        fields["max_tokens"] = req.max_output_tokens
    if req.stream:
        fields["stream"] = True
        fields["stream_options"] = StreamOptions(include_usage=True)
    if req.tools:
        fields["tools"] = [_chat_tool(tool) for tool in req.tools]
    if req.tool_choice is not None:
        fields["tool_choice"] = _chat_tool_choice(req.tool_choice)
    if req.text:
        response_format = _response_format(req.text)
        if response_format is not None:
            fields["response_format"] = response_format
        if req.text.get("verbosity") is not None:
            fields["verbosity"] = req.text["verbosity"]
    if req.reasoning and req.reasoning.get("effort"):
        fields["reasoning_effort"] = req.reasoning["effort"]
    for name, value in (req.model_extra or {}).items():
        if name in _PASSED_ON:
            fields[name] = value
    try:
        return ResponsesChatRequest(**fields)
    except ValidationError as exc:
        raise InvalidRequest(f"cannot translate the request: {exc.errors()[0]['msg']}") from None


def _unsupported(param: str, message: str) -> UnsupportedParameter:
    return UnsupportedParameter(message, param=param)


def _append(messages: list[ChatMessage], item: HistoryItem) -> None:
    if isinstance(item, FunctionCallItem):
        call = ToolCall(
            id=item.call_id, function=FunctionCall(name=item.name, arguments=item.arguments)
        )
        last = messages[-1] if messages else None
        # Calls that follow an assistant turn belong to it: chat puts them on one message.
        if last is not None and last.role == "assistant":
            last.tool_calls = [*(last.tool_calls or []), call]
        else:
            messages.append(ChatMessage(role="assistant", content=None, tool_calls=[call]))
        return
    if isinstance(item, FunctionCallOutputItem):
        output = item.output if isinstance(item.output, str) else _joined(item.output, "input")
        messages.append(ChatMessage(role="tool", tool_call_id=item.call_id, content=output))
        return
    if isinstance(item, OutputMessage):
        text = "".join(part.text for part in item.content)
        messages.append(ChatMessage(role="assistant", content=text))
        return
    if isinstance(item.content, str):
        messages.append(ChatMessage(role=item.role, content=item.content))
    elif item.role == "user":
        messages.append(ChatMessage(role="user", content=[_user_part(p) for p in item.content]))
    else:
        messages.append(ChatMessage(role=item.role, content=_joined(item.content, "input")))


def _joined(parts: list[InputContentPart], param: str) -> str:
    pieces = []
    for part in parts:
        if part.type in _TEXT_PARTS:
            pieces.append(part.text or "")
        elif part.type == "refusal":
            pieces.append(part.refusal or "")
        else:
            raise _unsupported(param, f"content parts of type {part.type!r} are not supported here")
    return "".join(pieces)


def _user_part(part: InputContentPart) -> ContentPart:
    if part.type in _TEXT_PARTS:
        return ContentPart(type="text", text=part.text or "")
    if part.type == "input_image" and part.image_url:
        image: dict[str, Any] = {"url": part.image_url}
        if part.detail:
            image["detail"] = part.detail
        return ContentPart.model_validate({"type": "image_url", "image_url": image})
    raise _unsupported(
        "input", f"content parts of type {part.type!r} are not supported by this gateway"
    )


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool["name"]}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
    if tool.get("strict") is not None:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise InvalidRequest(
                f"tool_choice {choice!r} is not one of {sorted(_TOOL_CHOICES)}", param="tool_choice"
            )
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _unsupported("tool_choice", f"tool_choice {choice!r} is not supported by this gateway")


def _response_format(text: dict[str, Any]) -> dict[str, Any] | None:
    if set(text) - {"format", "verbosity"}:
        unknown = sorted(set(text) - {"format", "verbosity"})[0]
        raise _unsupported("text", f"text.{unknown} is not supported by this gateway")
    fmt = text.get("format") or {"type": "text"}
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _unsupported("text.format", f"text.format of type {kind!r} is not supported")


# --- response ---------------------------------------------------------------------------------


def response_shell(
    req: ResponsesRequest, *, response_id: str, store: bool, created_at: int | None = None
) -> Response:
    """The response object for `req` before its answer: `in_progress`, no output; what the
    request set is echoed (as OpenAI does)."""
    fields: dict[str, Any] = {
        "id": response_id,
        "status": "in_progress",
        "model": req.model,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "previous_response_id": req.previous_response_id,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "tool_choice": req.tool_choice if req.tool_choice is not None else "auto",
        "tools": req.tools or [],
        "metadata": req.metadata or {},
        "store": store,
        "user": req.user,
    }
    if req.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = req.parallel_tool_calls
    if req.text:
        fields["text"] = req.text
    if created_at is not None:
        fields["created_at"] = created_at
    return Response(**fields)


def chat_to_response(chat: ChatCompletion, shell: Response) -> Response:
    """The finished response for a chat completion's first choice: its text as a message
    item, each tool call as a `function_call` item; `incomplete` when the answer was cut
    (length, content filter). Raises `UpstreamError` when the answer has no choices."""
    if not chat.choices:
        raise UpstreamError("the upstream answered with no choices")
    choice = chat.choices[0]
    output: list[OutputMessage | FunctionCallItem] = []
    text = choice.message.text() or choice.message.refusal or ""
    if text or not choice.message.tool_calls:
        output.append(OutputMessage(content=[OutputText(text=text)]))
    for call in choice.message.tool_calls or []:
        output.append(
            FunctionCallItem(
                id=new_item_id("fc"),
                call_id=call.id or new_item_id("call"),
                name=call.function.name or "",
                arguments=call.function.arguments or "",
                status="completed",
            )
        )
    return finished(shell, output, choice.finish_reason, chat.usage)


def finished(
    shell: Response,
    output: list[OutputMessage | FunctionCallItem],
    finish_reason: str | None,
    usage: ChatUsage | None,
) -> Response:
    """`shell` completed with its output items, status and usage."""
    incomplete = _INCOMPLETE.get(finish_reason or "")
    status = "incomplete" if incomplete else "completed"
    if incomplete:
        output = [
            item.model_copy(update={"status": "incomplete"})
            if isinstance(item, OutputMessage)
            else item
            for item in output
        ]
    return shell.model_copy(
        update={
            "status": status,
            "output": output,
            "incomplete_details": IncompleteDetails(reason=incomplete) if incomplete else None,
            "usage": response_usage(usage),
        }
    )


_INCOMPLETE: dict[str, Any] = {"length": "max_output_tokens", "content_filter": "content_filter"}


def response_usage(usage: ChatUsage | None) -> ResponseUsage | None:
    """Chat usage as Responses usage (cached and reasoning tokens kept when reported)."""
    if usage is None:
        return None
    extra = usage.model_extra or {}
    cached = _detail(extra.get("prompt_tokens_details"), "cached_tokens")
    reasoning = _detail(extra.get("completion_tokens_details"), "reasoning_tokens")
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        input_tokens_details=InputTokensDetails(cached_tokens=cached),
        output_tokens=usage.completion_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=reasoning),
        total_tokens=usage.total_tokens or usage.prompt_tokens + usage.completion_tokens,
    )


def _detail(details: object, name: str) -> int:
    if isinstance(details, dict) and isinstance(details.get(name), int):
        return int(details[name])
    return 0
