"""OpenAI wire models: chat, legacy completions, embeddings, models, stream chunks, errors.

Requests are strict where OpenAI is strict (required fields, types, ranges) and keep unknown
fields (`extra="allow"`) so that provider-specific parameters pass through to the upstream.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Wire(BaseModel):
    """Base for wire models: unknown fields are kept and sent on."""

    model_config = ConfigDict(extra="allow")

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict, without fields the client never set."""
        return self.model_dump(mode="json", exclude_none=True)


# --- chat -------------------------------------------------------------------------------------


class FunctionCall(_Wire):
    name: str | None = None
    arguments: str | None = None


class ToolCall(_Wire):
    id: str | None = None
    type: Literal["function"] | None = "function"
    function: FunctionCall
    index: int | None = None


class ContentPart(_Wire):
    """One part of a multi-part message (text, image_url, input_audio, file, ...)."""

    type: str
    text: str | None = None


class ChatMessage(_Wire):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None

    def text(self) -> str:
        """The message's text parts joined; non-text parts are skipped."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class FunctionDefinition(_Wire):
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Wire):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class StreamOptions(_Wire):
    include_usage: bool = False


class ResponseFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


Stop = str | list[str] | None


class ChatCompletionRequest(_Wire):
    """`POST /v1/chat/completions`."""

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    user: str | None = None
    seed: int | None = None
    tools: list[Tool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: Stop) -> Stop:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def set_params(self) -> set[str]:
        """Names of the parameters the client set (for unsupported-parameter checks)."""
        return {k for k in self.model_fields_set if getattr(self, k, None) is not None} | set(
            self.model_extra or {}
        )

    def unread_fields(self) -> list[str]:
        """Fields inside the messages and tools that this model does not name and that are
        not known to carry no text (e.g. `cache_control`), as dotted paths: nothing reads
        them, so they must not reach an upstream (a card number in a message's `metadata`)."""
        found: list[str] = []
        for i, message in enumerate(self.messages):
            found += _unknown(message, f"messages.{i}", _MESSAGE_EXTRAS)
            if isinstance(message.content, list):
                for j, part in enumerate(message.content):
                    known = _PART_FIELDS.get(part.type, frozenset()) | _ANY_PART
                    found += _unknown(part, f"messages.{i}.content.{j}", known)
            for k, call in enumerate(message.tool_calls or []):
                found += _unknown(call, f"messages.{i}.tool_calls.{k}", frozenset())
                found += _unknown(call.function, f"messages.{i}.tool_calls.{k}.function")
        for t, tool in enumerate(self.tools or []):
            found += _unknown(tool, f"tools.{t}", _ANY_PART)
            found += _unknown(tool.function, f"tools.{t}.function")
        return found


# What the wire models leave unnamed yet is read, or carries no text: a content part's own
# field by its type (`refusal` is read as text), prompt caching marks, and an assistant's
# earlier reasoning (read as text).
_PART_FIELDS = {
    "image_url": frozenset({"image_url"}),
    "input_audio": frozenset({"input_audio"}),
    "file": frozenset({"file"}),
    "refusal": frozenset({"refusal"}),
}
_ANY_PART = frozenset({"cache_control"})
_MESSAGE_EXTRAS = frozenset({"cache_control", "reasoning_content", "reasoning"})


def _unknown(model: BaseModel, path: str, known: frozenset[str] = frozenset()) -> list[str]:
    return [f"{path}.{name}" for name in sorted(set(model.model_extra or {}) - known)]


class Usage(_Wire):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ChatChoice(_Wire):
    index: int = 0
    message: ChatMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


def new_id(prefix: str) -> str:
    """A fresh OpenAI-style object id (`chatcmpl-...`)."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


class ChatCompletion(_Wire):
    id: str = Field(default_factory=lambda: new_id("chatcmpl"))
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ChoiceDelta(_Wire):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class ChunkChoice(_Wire):
    index: int = 0
    delta: ChoiceDelta = Field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(_Wire):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None
    system_fingerprint: str | None = None


# --- legacy completions -----------------------------------------------------------------------


class CompletionRequest(_Wire):
    """`POST /v1/completions` (legacy)."""

    model: str = Field(min_length=1)
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    n: int | None = Field(None, ge=1, le=128)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    echo: bool | None = None
    suffix: str | None = None
    logprobs: int | None = Field(None, ge=0, le=5)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    best_of: int | None = Field(None, ge=1)
    logit_bias: dict[str, float] | None = None
    seed: int | None = None
    user: str | None = None

    def set_params(self) -> set[str]:
        """Names of the parameters the client set."""
        return {k for k in self.model_fields_set if getattr(self, k, None) is not None} | set(
            self.model_extra or {}
        )


class CompletionChoice(_Wire):
    index: int = 0
    text: str
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class Completion(_Wire):
    id: str = Field(default_factory=lambda: new_id("cmpl"))
    object: Literal["text_completion"] = "text_completion"
    created: int = Field(default_factory=lambda: int(time.time()))
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


# Streamed legacy completions use the same object with partial text in each choice.
CompletionChunk = Completion


# --- embeddings -------------------------------------------------------------------------------


class EmbeddingRequest(_Wire):
    """`POST /v1/embeddings`."""

    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    # No embedding model has more (OpenAI's largest has 3,072): an absurd value is the
    # client's mistake, a 400 here rather than a 502 from the upstream.
    dimensions: int | None = Field(None, ge=1, le=65_536)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value == "" or value == []:
            raise ValueError("input must not be empty")
        return value

    def set_params(self) -> set[str]:
        """Names of the parameters the client set."""
        return {k for k in self.model_fields_set if getattr(self, k, None) is not None}


class Embedding(_Wire):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(_Wire):
    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(_Wire):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage = Field(default_factory=EmbeddingUsage)


# --- models -----------------------------------------------------------------------------------


class Model(_Wire):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "raygate"


class ModelList(_Wire):
    object: Literal["list"] = "list"
    data: list[Model]
