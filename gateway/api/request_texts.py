"""Where a request's texts sit, for the input policy to read them and write back what it
redacted: every text a chat request carries to the model (`text_slots`), the same body with
those texts replaced (`with_texts`), a prompt's or input's strings, and the tool results that
entered a conversation from outside the caller."""

from __future__ import annotations

import json
from typing import Any, cast

from gateway.errors import InvalidRequest
from gateway.protocol.openai import ChatCompletionRequest, ContentPart

# Where a text sits in a chat request: its kind, the message (or tool) index, and the index
# of the content part or tool call within the message (-1 where there is none).
TextSlot = tuple[str, int, int]


def strings_of(value: str | list[str] | list[int] | list[list[int]]) -> list[str] | None:
    """The texts of a prompt / input; None when it is (or holds) token ids."""
    if isinstance(value, str):
        return [value]
    if all(isinstance(v, str) for v in value):
        return [v for v in value if isinstance(v, str)]
    return None


def text_slots(body: ChatCompletionRequest) -> list[tuple[TextSlot, str]]:
    """Every text a chat request carries to the model, with where it sits: message contents
    and text parts (and a file part's name), participant names, refusals, the arguments of
    earlier tool calls, and the tools' descriptions and parameter schemas."""
    slots: list[tuple[TextSlot, str]] = []
    for i, message in enumerate(body.messages):
        if isinstance(message.content, str):
            slots.append((("content", i, -1), message.content))
        elif message.content is not None:
            for j, part in enumerate(message.content):
                if part.text:
                    slots.append((("part", i, j), part.text))
                refusal = (part.model_extra or {}).get("refusal")
                if isinstance(refusal, str) and refusal:
                    slots.append((("refusal_part", i, j), refusal))
                filename = _filename(part.model_extra)
                if filename:
                    slots.append((("filename", i, j), filename))
        for field in ("reasoning_content", "reasoning"):  # an assistant's earlier reasoning
            reasoning = (message.model_extra or {}).get(field)
            if isinstance(reasoning, str) and reasoning:
                slots.append(((field, i, -1), reasoning))
        if message.name:
            slots.append((("name", i, -1), message.name))
        if message.refusal:
            slots.append((("refusal", i, -1), message.refusal))
        for k, call in enumerate(message.tool_calls or []):
            if call.function.arguments:
                slots.append((("arguments", i, k), call.function.arguments))
    for t, tool in enumerate(body.tools or []):
        if tool.function.description:
            slots.append((("description", t, -1), tool.function.description))
        if tool.function.parameters:
            slots.append((("parameters", t, -1), json.dumps(tool.function.parameters)))
    schema = body.response_format.json_schema if body.response_format else None
    if schema:  # a structured output's schema: its descriptions instruct the model too
        slots.append((("response_schema", -1, -1), json.dumps(schema)))
    stops = [body.stop] if isinstance(body.stop, str) else body.stop or []
    slots += [(("stop", k, -1), stop) for k, stop in enumerate(stops) if stop]
    if body.user:
        slots.append((("user", -1, -1), body.user))
    return slots


def _filename(extra: dict[str, Any] | None) -> str | None:
    file = (extra or {}).get("file")
    name = file.get("filename") if isinstance(file, dict) else None
    return name if isinstance(name, str) and name else None


def with_texts(
    body: ChatCompletionRequest, where: list[TextSlot], texts: list[str]
) -> ChatCompletionRequest:
    """`body` with each slot's text replaced (the redacted texts, in `text_slots` order)."""
    body = body.model_copy(deep=True)
    for slot, text in zip(where, texts, strict=True):
        kind, index, inner = slot
        if kind in _REQUEST_LEVEL:
            _set_request_text(body, kind, index, text)
            continue
        if kind == "description" or kind == "parameters":
            function = (body.tools or [])[index].function
            if kind == "description":
                function.description = text
            else:
                function.parameters = _schema(text, f"tools.{index}.function.parameters")
            continue
        message = body.messages[index]
        if kind == "content":
            message.content = text
        elif kind == "name":
            message.name = text
        elif kind == "refusal":
            message.refusal = text
        elif kind in ("reasoning_content", "reasoning"):
            (message.model_extra or {})[kind] = text
        elif kind == "arguments":
            (message.tool_calls or [])[inner].function.arguments = text
        else:
            part = cast(list[ContentPart], message.content)[inner]
            if kind == "part":
                part.text = text
            elif kind == "refusal_part":
                (part.model_extra or {})["refusal"] = text
            else:
                (part.model_extra or {})["file"]["filename"] = text
    return body


_REQUEST_LEVEL = frozenset({"response_schema", "stop", "user"})


def _set_request_text(body: ChatCompletionRequest, kind: str, index: int, text: str) -> None:
    if kind == "user":
        body.user = text
    elif kind == "stop":
        body.stop = (
            text
            if isinstance(body.stop, str)
            else [text if k == index else stop for k, stop in enumerate(body.stop or [])]
        )
    elif body.response_format is not None:
        body.response_format.json_schema = _schema(text, "response_format.json_schema")


def _schema(text: str, param: str) -> dict[str, Any]:
    """A schema after redaction: still JSON where a value sat in a string (placeholders hold
    no quotes), refused where one sat in a number."""
    try:
        schema = json.loads(text)
    except ValueError:
        schema = None
    if not isinstance(schema, dict):
        raise InvalidRequest(
            "A schema holds a value your policy profile redacts outside a string; remove it.",
            param=param,
            code="policy_unreadable_input",
        )
    return schema


def tool_results_of(body: ChatCompletionRequest) -> list[str]:
    """The texts that entered the conversation from outside the caller: tool results."""
    return [m.text() for m in body.messages if m.role in ("tool", "function") and m.text()]
