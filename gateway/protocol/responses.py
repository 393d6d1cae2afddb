"""OpenAI Responses API wire models (`/v1/responses`): the request, the response object, its
output items, and the typed stream events.

The request is strict where OpenAI is strict and keeps unknown fields, so that the converter
can refuse them by name (`responses_convert.py`) instead of dropping them silently. The
response side follows OpenAI's shapes closely enough for the official SDK's models to parse.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Wire(BaseModel):
    """Base for wire models: unknown fields are kept (the converter decides about them)."""

    model_config = ConfigDict(extra="allow")

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict, without fields that are None."""
        return self.model_dump(mode="json", exclude_none=True)


def new_item_id(prefix: str) -> str:
    """A fresh OpenAI-style id with its prefix: `resp_...`, `msg_...`, `fc_...`."""
    return f"{prefix}_{uuid.uuid4().hex}"


# --- request ----------------------------------------------------------------------------------


class InputContentPart(_Wire):
    """A part of a message's content: `input_text`, `output_text`, `refusal`, `input_image`
    (translated); `input_file` / `input_audio` are refused by the converter."""

    type: str
    text: str | None = None
    refusal: str | None = None
    image_url: str | None = None
    detail: str | None = None


class MessageItem(_Wire):
    """A message in the input (`type` may be left out, as OpenAI allows)."""

    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputContentPart]
    id: str | None = None
    status: str | None = None

    def prompt_line(self) -> str:
        """The message as one role-prefixed line of text (non-text parts skipped)."""
        if isinstance(self.content, str):
            return f"{self.role}: {self.content}"
        text = "".join(part.text or part.refusal or "" for part in self.content)
        return f"{self.role}: {text}"


class FunctionCallItem(_Wire):
    """A function call the model made (echoed back in the input, or an output item)."""

    type: Literal["function_call"] = "function_call"
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: str | None = None

    def prompt_line(self) -> str:
        """The call as one line of text."""
        return f"assistant: {self.name}({self.arguments})"


class FunctionCallOutputItem(_Wire):
    """The caller's result of a function call, matched to it by `call_id`."""

    type: Literal["function_call_output"] = "function_call_output"
    call_id: str = Field(min_length=1)
    output: str | list[InputContentPart]
    id: str | None = None
    status: str | None = None

    def prompt_line(self) -> str:
        """The result as one line of text."""
        if isinstance(self.output, str):
            return f"tool: {self.output}"
        return "tool: " + "".join(part.text or "" for part in self.output)


class OtherItem(_Wire):
    """An input item of a kind the gateway does not translate (refused by name)."""

    type: str


class ResponsesRequest(_Wire):
    """`POST /v1/responses`."""

    model: str = Field(min_length=1)
    input: str | list[MessageItem | FunctionCallItem | FunctionCallOutputItem | OtherItem]
    instructions: str | None = None
    previous_response_id: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_output_tokens: int | None = Field(None, ge=1)
    metadata: dict[str, str] | None = None
    store: bool | None = None
    stream: bool = False
    user: str | None = None
    text: dict[str, Any] | None = None
    truncation: str | None = None
    background: bool | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = None

    def input_items(self) -> list[MessageItem | FunctionCallItem | FunctionCallOutputItem]:
        """The input as a list of items (a string is one user message); call only after the
        converter refused the kinds it does not translate."""
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return [item for item in self.input if not isinstance(item, OtherItem)]


# --- response ---------------------------------------------------------------------------------


class OutputText(_Wire):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(_Wire):
    """The assistant's message in a response's `output`."""

    type: Literal["message"] = "message"
    id: str = Field(default_factory=lambda: new_item_id("msg"))
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[OutputText] = Field(default_factory=list)


OutputItem = OutputMessage | FunctionCallItem


class InputTokensDetails(_Wire):
    cached_tokens: int = 0
    cache_write_tokens: int = 0  # the SDK requires it; chat usage never reports it


class OutputTokensDetails(_Wire):
    reasoning_tokens: int = 0


class ResponseUsage(_Wire):
    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class ResponseError(_Wire):
    code: str
    message: str


class IncompleteDetails(_Wire):
    reason: Literal["max_output_tokens", "content_filter"]


class Response(_Wire):
    """The response object: what `POST /v1/responses` answers and `GET` retrieves."""

    id: str = Field(default_factory=lambda: new_item_id("resp"))
    object: Literal["response"] = "response"
    created_at: int = Field(default_factory=lambda: int(time.time()))
    status: Literal["completed", "incomplete", "failed", "in_progress"] = "completed"
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputMessage | FunctionCallItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    usage: ResponseUsage | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    store: bool = True
    user: str | None = None
    truncation: str = "disabled"
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})

    def wire(self) -> dict[str, Any]:
        """The JSON body: None fields OpenAI always sends (`error`, `incomplete_details`,
        `instructions`, ...) are kept as null, as clients expect them present."""
        return self.model_dump(mode="json", exclude_none=False)

    def output_text(self) -> str:
        """The text of every output message, joined."""
        return "".join(
            part.text
            for item in self.output
            if isinstance(item, OutputMessage)
            for part in item.content
        )


class ResponseDeleted(_Wire):
    id: str
    object: Literal["response.deleted"] = "response.deleted"
    deleted: bool = True


class InputItemList(_Wire):
    """`GET /v1/responses/{id}/input_items`: a response's input items, as a list page."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


# --- stream events ----------------------------------------------------------------------------


class StreamEvent(_Wire):
    """One typed stream event: `type` names it, `sequence_number` orders it; the other
    fields depend on the type (as OpenAI's events do)."""

    type: str
    sequence_number: int
