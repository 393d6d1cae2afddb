"""Canonical chat requests onto Gemini's `generateContent` body. Pure functions, no I/O.

Lossy or refused mappings, each deliberate:
- `system` / `developer` messages, wherever they are, become `systemInstruction`.
- Message `name`s and the `user` field are dropped (Gemini has neither; they do not change
  the answer).
- A tool result's `response` is its content when that is a JSON object, else
  `{"result": <content>}` (Gemini wants an object); the function's name is recovered from
  the assistant tool call the result answers.
- `parallel_tool_calls: false`, `logprobs`, `top_logprobs` and `logit_bias` are refused:
  Gemini cannot honour them.
- `response_format` json_object sets `responseMimeType: application/json`; json_schema also
  sets `responseSchema`. Schemas (there and in tool parameters) are converted by
  `gemini_schema`, which documents what it drops.
- Image (and audio, file) parts: data: URLs become `inlineData`; http(s) / gs:// URLs become
  `fileData` with the media type guessed from the URL's extension.
- `top_k` (an extra field) becomes `topK`; `reasoning_effort` becomes a
  `thinkingConfig.thinkingBudget` (none 0, minimal and low 1024, medium 8192, high 24576
  tokens: the budgets Google's own OpenAI-compatible endpoint uses); other unknown fields go
  on at the top level.
"""

from __future__ import annotations

import json
import mimetypes
from typing import Any

from gateway.errors import InvalidRequest, UnsupportedParameter
from gateway.protocol.gemini_schema import to_gemini_schema
from gateway.protocol.openai import ChatCompletionRequest, ChatMessage, FunctionDefinition

SIGNATURE_MARK = "__thought__"
"""Gemini's thought signatures ride in the tool call ids the gateway hands out, after this
mark, so that a client sending the history back returns them (Gemini 3 requires that)."""

_TOOL_MODES = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
THINKING_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
_CONFIG_FIELDS = {  # chat field -> generationConfig field, passed as they are
    "temperature": "temperature",
    "top_p": "topP",
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "n": "candidateCount",
}


# --- chat ------------------------------------------------------------------------------------


def chat_request_to_gemini(req: ChatCompletionRequest) -> dict[str, Any]:
    """The `generateContent` body for a chat request.

    Raises `UnsupportedParameter` for what Gemini cannot honour and `InvalidRequest` for
    history it cannot express (e.g. a tool result whose call is not in the history).
    """
    for param in ("logit_bias", "top_logprobs"):
        if getattr(req, param) is not None:
            raise UnsupportedParameter(
                f"parameter {param!r} is not supported by Gemini", param=param
            )
    if req.logprobs:
        raise UnsupportedParameter(
            "parameter 'logprobs' is not supported by Gemini", param="logprobs"
        )
    if req.parallel_tool_calls is False:
        raise UnsupportedParameter(
            "Gemini cannot be told to avoid parallel tool calls", param="parallel_tool_calls"
        )
    system, contents = _contents(req.messages)
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": text} for text in system]}
    if req.tools:
        body["tools"] = [{"functionDeclarations": [_declaration(t.function) for t in req.tools]}]
    if req.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(req.tool_choice)}
    extras = dict(req.model_extra or {})
    config = _generation_config(req, top_k=extras.pop("top_k", None))
    effort = extras.pop("reasoning_effort", None)
    if effort is not None:
        if effort not in THINKING_BUDGETS:
            raise InvalidRequest(
                f"reasoning_effort must be one of {', '.join(THINKING_BUDGETS)}",
                param="reasoning_effort",
            )
        config["thinkingConfig"] = {"thinkingBudget": THINKING_BUDGETS[effort]}
    if config:
        body["generationConfig"] = config
    # Fields chat has no name for (safetySettings, cachedContent, ...) go on as they are.
    body.update(extras)
    return body


def _contents(messages: list[ChatMessage]) -> tuple[list[str], list[dict[str, Any]]]:
    names = {
        call.id: call.function.name
        for message in messages
        for call in message.tool_calls or []
        if call.id and call.function.name
    }
    system: list[str] = []
    contents: list[dict[str, Any]] = []
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
            role, parts = "user", [_function_response(message, names)]
        elif message.role == "user":
            role, parts = "user", _user_parts(message)
        else:
            role, parts = "model", _model_parts(message)
        if not parts:
            continue
        # Parallel calls' results must come back in one turn; Gemini wants turns to alternate.
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _user_parts(message: ChatMessage) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        return [{"text": message.content}] if message.content else []
    parts = []
    for part in message.content or []:
        data = part.model_dump(exclude_none=True)
        kind = data.get("type")
        if kind == "text":
            parts.append({"text": data.get("text") or ""})
        elif kind == "image_url":
            image = data.get("image_url")
            parts.append(_media(image.get("url") if isinstance(image, dict) else image))
        elif kind == "input_audio" and isinstance(data.get("input_audio"), dict):
            audio = data["input_audio"]
            mime = f"audio/{audio.get('format', 'wav')}"
            parts.append({"inlineData": {"mimeType": mime, "data": audio.get("data", "")}})
        elif kind == "file" and isinstance(data.get("file"), dict) and "file_data" in data["file"]:
            parts.append(_media(data["file"]["file_data"]))
        else:
            raise UnsupportedParameter(
                f"content parts of type {kind!r} are not supported by Gemini", param="messages"
            )
    return parts


def _media(url: Any) -> dict[str, Any]:
    if not isinstance(url, str):
        raise InvalidRequest("a media part needs a URL", param="messages")
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        mime, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not mime:
            raise InvalidRequest("data URLs must be base64 encoded", param="messages")
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("http://", "https://", "gs://")):
        guessed = mimetypes.guess_type(url.split("?", 1)[0])[0]
        if guessed is None:
            raise InvalidRequest(
                "cannot tell the media type of this URL for Gemini; send a data: URL",
                param="messages",
            )
        return {"fileData": {"mimeType": guessed, "fileUri": url}}
    raise InvalidRequest("a media URL must be http(s), gs:// or a data: URL", param="messages")


def _model_parts(message: ChatMessage) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text = message.text() or message.refusal
    if text:
        parts.append({"text": text})
    for call in message.tool_calls or []:
        try:
            args = json.loads(call.function.arguments or "{}")
        except ValueError:
            raise InvalidRequest(
                "an assistant tool call's arguments are not valid JSON", param="messages"
            ) from None
        if not isinstance(args, dict):
            raise InvalidRequest(
                "an assistant tool call's arguments must be a JSON object", param="messages"
            )
        part: dict[str, Any] = {"functionCall": {"name": call.function.name, "args": args}}
        signature = (call.id or "").partition(SIGNATURE_MARK)[2]
        if signature:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _function_response(message: ChatMessage, names: dict[str, str]) -> dict[str, Any]:
    name = names.get(message.tool_call_id or "") or message.name
    if not name:
        raise InvalidRequest(
            f"tool message {message.tool_call_id!r} answers no tool call in the conversation",
            param="messages",
        )
    text = message.text()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    response = value if isinstance(value, dict) else {"result": text}
    return {"functionResponse": {"name": name, "response": response}}


def _declaration(function: FunctionDefinition) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    if function.parameters:
        schema = to_gemini_schema(function.parameters, param="tools")
        # Gemini rejects an object schema without properties: a no-argument tool has none.
        if schema.get("properties") or schema.get("type") not in (None, "object"):
            declaration["parameters"] = schema
    return declaration


def _calling_config(choice: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(choice, str):
        if choice not in _TOOL_MODES:
            raise InvalidRequest(f"unknown tool_choice {choice!r}", param="tool_choice")
        return {"mode": _TOOL_MODES[choice]}
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else None
    if choice.get("type") != "function" or not isinstance(name, str):
        raise InvalidRequest("tool_choice must name a function", param="tool_choice")
    return {"mode": "ANY", "allowedFunctionNames": [name]}


def _generation_config(req: ChatCompletionRequest, *, top_k: Any) -> dict[str, Any]:
    config: dict[str, Any] = {}
    max_tokens = req.max_completion_tokens or req.max_tokens
    if max_tokens is not None:
        config["maxOutputTokens"] = max_tokens
    for field, name in _CONFIG_FIELDS.items():
        if getattr(req, field) is not None:
            config[name] = getattr(req, field)
    if top_k is not None:
        config["topK"] = top_k
    if req.stop is not None:
        config["stopSequences"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.response_format is not None and req.response_format.type != "text":
        config["responseMimeType"] = "application/json"
        spec = req.response_format.json_schema or {}
        if req.response_format.type == "json_schema" and spec.get("schema"):
            config["responseSchema"] = to_gemini_schema(spec["schema"], param="response_format")
    return config
