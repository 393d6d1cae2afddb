"""Anthropic Messages wire models: requests, responses, content blocks and stream events.

Like the OpenAI models, these keep unknown fields (`extra="allow"`) so that new Anthropic
parameters and block fields pass through. Content blocks the gateway does not model (document,
thinking, server-tool blocks, ...) parse as `GenericBlock`. A stream event's `type` is its SSE
event name; `wire()` gives the JSON body, with the nulls Anthropic itself sends kept.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    model_serializer,
)


class _Wire(BaseModel):
    """Base for Anthropic wire models: unknown fields are kept and sent on."""

    model_config = ConfigDict(extra="allow")

    # Fields that Anthropic sends as an explicit `null` (e.g. `stop_reason` in message_start);
    # kept through `exclude_none` dumps so that clients see the exact shape.
    _null_fields: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _keep_nulls(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self._null_fields:
                data.setdefault(name, None)
        return data

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict: unset optional fields left out, Anthropic's nulls kept."""
        return self.model_dump(mode="json", exclude_none=True)


def new_message_id() -> str:
    """A fresh Anthropic-style message id (`msg_...`)."""
    return f"msg_{uuid.uuid4().hex[:24]}"


def new_tool_use_id() -> str:
    """A fresh Anthropic-style tool use id (`toolu_...`)."""
    return f"toolu_{uuid.uuid4().hex[:24]}"


# --- content blocks ---------------------------------------------------------------------------


class TextBlock(_Wire):
    type: Literal["text"] = "text"
    text: str


class Base64Source(_Wire):
    type: Literal["base64"] = "base64"
    media_type: str
    data: str


class URLSource(_Wire):
    type: Literal["url"] = "url"
    url: str


class ImageBlock(_Wire):
    type: Literal["image"] = "image"
    source: Annotated[Base64Source | URLSource, Field(discriminator="type")]


class ToolUseBlock(_Wire):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class GenericBlock(_Wire):
    """A block the gateway passes without modelling it (document, thinking, server tools)."""

    type: str


ToolResultContent = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[GenericBlock, Tag("other")],
    Discriminator(lambda v: _block_tag(v, ("text", "image"))),
]


class ToolResultBlock(_Wire):
    type: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: str | list[ToolResultContent] | None = None
    is_error: bool | None = None


def _block_tag(value: Any, known: tuple[str, ...]) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in known else "other"


ContentBlock = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[GenericBlock, Tag("other")],
    Discriminator(lambda v: _block_tag(v, ("text", "image", "tool_use", "tool_result"))),
]


# --- request ----------------------------------------------------------------------------------


class InputMessage(_Wire):
    role: Literal["user", "assistant"]
    content: str | list[ContentBlock]


class ToolDefinition(_Wire):
    """A client tool; server tools (with a versioned `type`) also parse here."""

    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    type: str | None = None


class ToolChoice(_Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(_Wire):
    user_id: str | None = None


class MessagesRequest(_Wire):
    """`POST /v1/messages`."""

    model: str = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)
    top_k: int | None = Field(None, ge=0)
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None


class CountTokensRequest(_Wire):
    """`POST /v1/messages/count_tokens`: a Messages request without its sampling fields."""

    model: str = Field(min_length=1)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None


class TokenCount(_Wire):
    """The answer of `POST /v1/messages/count_tokens`."""

    input_tokens: int


# --- response ---------------------------------------------------------------------------------


StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
]


class Usage(_Wire):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class Message(_Wire):
    """A whole assistant message (the non-streamed answer, and message_start's payload)."""

    _null_fields = ("stop_reason", "stop_sequence")

    id: str = Field(default_factory=new_message_id)
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ContentBlock] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage = Field(default_factory=Usage)


# --- stream events ----------------------------------------------------------------------------


class MessageStartEvent(_Wire):
    type: Literal["message_start"] = "message_start"
    message: Message


class ContentBlockStartEvent(_Wire):
    type: Literal["content_block_start"] = "content_block_start"
    index: int
    content_block: ContentBlock


class TextDelta(_Wire):
    type: Literal["text_delta"] = "text_delta"
    text: str


class InputJSONDelta(_Wire):
    type: Literal["input_json_delta"] = "input_json_delta"
    partial_json: str


class GenericDelta(_Wire):
    """A delta the gateway does not model (thinking_delta, signature_delta, citations_delta)."""

    type: str


BlockDelta = Annotated[
    Annotated[TextDelta, Tag("text_delta")]
    | Annotated[InputJSONDelta, Tag("input_json_delta")]
    | Annotated[GenericDelta, Tag("other")],
    Discriminator(lambda v: _block_tag(v, ("text_delta", "input_json_delta"))),
]


class ContentBlockDeltaEvent(_Wire):
    type: Literal["content_block_delta"] = "content_block_delta"
    index: int
    delta: BlockDelta


class ContentBlockStopEvent(_Wire):
    type: Literal["content_block_stop"] = "content_block_stop"
    index: int


class MessageDelta(_Wire):
    _null_fields = ("stop_reason", "stop_sequence")

    stop_reason: StopReason | None = None
    stop_sequence: str | None = None


class MessageDeltaUsage(_Wire):
    output_tokens: int = 0
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDeltaEvent(_Wire):
    type: Literal["message_delta"] = "message_delta"
    delta: MessageDelta
    usage: MessageDeltaUsage


class MessageStopEvent(_Wire):
    type: Literal["message_stop"] = "message_stop"


class PingEvent(_Wire):
    type: Literal["ping"] = "ping"


class ErrorDetail(_Wire):
    type: str
    message: str


class ErrorEvent(_Wire):
    """An error, mid-stream or as a whole response body."""

    type: Literal["error"] = "error"
    error: ErrorDetail


StreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | PingEvent
    | ErrorEvent
)
"""Any Anthropic stream event; `event.type` is its SSE event name."""
