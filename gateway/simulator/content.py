"""Deterministic answers, token counts and embeddings, independent of any wire format.

Token counting is deliberately crude and stable: one token per whitespace-separated word
(`count_tokens`). Every format reports usage with it, so a client can predict usage exactly.

An answer is `"Simulated answer from {model}: "` followed by `answer_words` words: the words of
the last user message, padded with filler words chosen from a hash of that message. The same
request always gets the same answer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Literal

Finish = Literal["end", "length", "stop_sequence", "tool_use"]
"""Why an answer ended; each format maps these to its own finish reason names."""

ToolMode = Literal["auto", "none", "required"]

_FILLER = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
_MAX_SCHEMA_DEPTH = 32


def count_tokens(*texts: str) -> int:
    """Count tokens the simulator's way: one per whitespace-separated word."""
    return sum(len(text.split()) for text in texts)


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool the client offers: its name and the JSON schema of its arguments."""

    name: str
    schema: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Prompt:
    """What a chat request asks for, once its wire format has been stripped away."""

    model: str
    user_text: str = ""
    prompt_tokens: int = 0
    tool_result: str | None = None
    """The content of the tool result when the conversation ends with one."""
    tools: list[Tool] = field(default_factory=list)
    tool_mode: ToolMode = "auto"
    forced_tool: str | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    n: int = 1
    json_mode: bool = False
    json_schema: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the simulated model makes; `key` is a stable hex id for format-specific ids."""

    key: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        """The arguments serialised as the providers send them."""
        return json.dumps(self.arguments)


@dataclass(frozen=True, slots=True)
class Completion:
    """One generated choice: text or a tool call, and why it ended."""

    index: int
    text: str
    finish: Finish
    tool_call: ToolCall | None = None
    stop_sequence: str | None = None

    @property
    def tokens(self) -> int:
        """Output tokens of this choice."""
        if self.tool_call is not None:
            return count_tokens(self.tool_call.name, self.tool_call.arguments_json)
        return count_tokens(self.text)

    def pieces(self) -> list[str]:
        """The text split into one-word stream deltas that concatenate back to `text`."""
        if not self.text:
            return []
        words = self.text.split(" ")
        return [words[0], *(" " + word for word in words[1:])]


def generate(prompt: Prompt, answer_words: int) -> list[Completion]:
    """Answer `prompt` with `prompt.n` choices.

    Raises ValueError when the prompt forces a tool it does not offer.
    """
    tool = _chosen_tool(prompt)
    if tool is not None:
        return [_tool_completion(prompt, tool, index) for index in range(prompt.n)]
    return [_text_completion(prompt, answer_words, index) for index in range(prompt.n)]


def synthesize(schema: Any, _depth: int = 0) -> Any:
    """A value matching a JSON schema (or Gemini schema, whose type names are upper case).

    Objects get every property (and every required one); strings are "example", integers
    1, numbers 1.0, booleans true, arrays empty; enums give their first value.
    """
    if not isinstance(schema, dict) or _depth > _MAX_SCHEMA_DEPTH:
        return None
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if isinstance(schema.get(key), list) and schema[key]:
            return synthesize(schema[key][0], _depth + 1)
    kind = _schema_type(schema)
    if kind == "object":
        properties = schema.get("properties") or {}
        value = {name: synthesize(sub, _depth + 1) for name, sub in properties.items()}
        for name in schema.get("required") or []:
            value.setdefault(name, "example")
        return value
    return {"array": [], "string": "example", "integer": 1, "number": 1.0, "boolean": True}.get(
        kind
    )


def embed(text: str, dim: int) -> list[float]:
    """A unit vector derived from a hash of `text`: same text, same vector."""
    raw = hashlib.shake_256(text.encode()).digest(2 * dim)
    values = struct.unpack(f"<{dim}h", raw)
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def encode_base64(vector: list[float]) -> str:
    """A vector as OpenAI's `encoding_format="base64"`: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def _schema_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    return "object" if "properties" in schema else "string"


def _chosen_tool(prompt: Prompt) -> Tool | None:
    if not prompt.tools or prompt.tool_mode == "none" or prompt.tool_result is not None:
        return None
    if prompt.forced_tool is None:
        return prompt.tools[0]
    for tool in prompt.tools:
        if tool.name == prompt.forced_tool:
            return tool
    raise ValueError(f"tool_choice names a tool that is not in tools: {prompt.forced_tool!r}")


def _tool_completion(prompt: Prompt, tool: Tool, index: int) -> Completion:
    key = hashlib.blake2b(
        f"{prompt.model}\0{prompt.user_text}\0{tool.name}\0{index}".encode(), digest_size=12
    ).hexdigest()
    arguments = synthesize(tool.schema) if tool.schema else {}
    if not isinstance(arguments, dict):
        arguments = {}
    return Completion(index, "", "tool_use", ToolCall(key, tool.name, arguments))


def _text_completion(prompt: Prompt, answer_words: int, index: int) -> Completion:
    text = _full_text(prompt, answer_words, index)
    finish: Finish = "end"
    stop_sequence = None
    cut_at = len(text)
    for stop in prompt.stop:
        position = text.find(stop) if stop else -1
        if 0 <= position < cut_at:
            cut_at, stop_sequence = position, stop
    if stop_sequence is not None:
        text, finish = text[:cut_at], "stop_sequence"
    if prompt.max_tokens is not None and count_tokens(text) > prompt.max_tokens:
        text = _first_words(text, prompt.max_tokens)
        finish, stop_sequence = "length", None
    return Completion(index, text, finish, stop_sequence=stop_sequence)


def _full_text(prompt: Prompt, answer_words: int, index: int) -> str:
    suffix = f" (choice {index})" if index else ""
    if prompt.json_schema is not None:
        return json.dumps(synthesize(prompt.json_schema))
    prefix = f"Simulated answer from {prompt.model}:"
    if prompt.tool_result is not None:
        answer = f'{prefix} the tool returned "{_squash(prompt.tool_result)}"{suffix}'
    else:
        answer = f"{prefix} {_answer_words(prompt.user_text, answer_words)}{suffix}".rstrip()
    return json.dumps({"answer": answer}) if prompt.json_mode else answer


def _answer_words(user_text: str, answer_words: int) -> str:
    words = user_text.split()[:answer_words]
    seed = zlib.crc32(user_text.encode())
    for i in range(answer_words - len(words)):
        words.append(_FILLER[(seed + 7 * i) % len(_FILLER)])
    return " ".join(words)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _first_words(text: str, count: int) -> str:
    return " ".join(text.split()[:count])
