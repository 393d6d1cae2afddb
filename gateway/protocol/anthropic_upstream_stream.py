"""Anthropic's stream events onto canonical chat completion chunks (the adapter side)."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.errors import UpstreamError
from gateway.protocol.anthropic import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    GenericDelta,
    InputJSONDelta,
    MessageDeltaEvent,
    MessageStartEvent,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
)
from gateway.protocol.anthropic_upstream import JSON_TOOL_NAME, chat_usage, finish_reason
from gateway.protocol.openai import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkChoice,
    FunctionCall,
    ToolCall,
    new_id,
)

_EVENTS: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
_EVENT_TYPES = {"message_start", "content_block_start", "content_block_delta",
                "content_block_stop", "message_delta", "message_stop", "ping", "error"}  # fmt: skip


class AnthropicStreamTranslator:
    """Turns Anthropic stream events, one at a time, into chat completion chunks.

    `feed` takes each event's parsed JSON and returns the chunks it produces: a role chunk at
    message_start, content / tool call deltas, a finish chunk at message_delta, and a usage
    chunk (empty `choices`) at message_stop, after which `finished` is true. Error events
    are left to the caller; malformed events raise `UpstreamError`.
    """

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.id = new_id("chatcmpl")
        self.finished = False
        self._tool_index: dict[int, int] = {}  # content block index -> tool call index
        self._json_blocks: set[int] = set()
        self._json_answer = False
        self._tokens = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}

    def feed(self, data: Any) -> list[ChatCompletionChunk]:
        """The chunks for one event (possibly none)."""
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in _EVENT_TYPES:
            return []  # Anthropic may add event types; unknown ones carry nothing we relay.
        try:
            event = _EVENTS.validate_python(data)
        except ValidationError:
            raise UpstreamError(f"the upstream sent a malformed {kind} event") from None
        if isinstance(event, MessageStartEvent):
            self.id = event.message.id
            self._count(event.message.usage.model_dump())
            return [self._chunk(ChoiceDelta(role="assistant", content=""))]
        if isinstance(event, ContentBlockStartEvent):
            return self._block_start(event)
        if isinstance(event, ContentBlockDeltaEvent):
            return self._block_delta(event)
        if isinstance(event, MessageDeltaEvent):
            self._count(event.usage.model_dump())
            finish = finish_reason(event.delta.stop_reason, json_answer=self._json_answer)
            return [self._chunk(ChoiceDelta(), finish_reason=finish)]
        if event.type == "message_stop":
            self.finished = True
            t = self._tokens
            usage = chat_usage(t["input"], t["output"], t["cache_read"], t["cache_write"])
            return [ChatCompletionChunk(id=self.id, model=self.model, choices=[], usage=usage)]
        return []

    def _count(self, usage: dict[str, Any]) -> None:
        # Anthropic's counts are cumulative: the latest value replaces the earlier one.
        for key, name in (
            ("input", "input_tokens"),
            ("output", "output_tokens"),
            ("cache_read", "cache_read_input_tokens"),
            ("cache_write", "cache_creation_input_tokens"),
        ):
            if isinstance(usage.get(name), int):
                self._tokens[key] = usage[name]

    def _block_start(self, event: ContentBlockStartEvent) -> list[ChatCompletionChunk]:
        block = event.content_block
        if isinstance(block, ToolUseBlock) and block.name == JSON_TOOL_NAME:
            self._json_blocks.add(event.index)
            self._json_answer = True
            return []
        if isinstance(block, ToolUseBlock):
            index = self._tool_index[event.index] = len(self._tool_index)
            call = ToolCall(
                index=index, id=block.id, function=FunctionCall(name=block.name, arguments="")
            )
            return [self._chunk(ChoiceDelta(tool_calls=[call]))]
        if isinstance(block, TextBlock) and block.text:
            return [self._chunk(ChoiceDelta(content=block.text))]
        return []

    def _block_delta(self, event: ContentBlockDeltaEvent) -> list[ChatCompletionChunk]:
        delta = event.delta
        if isinstance(delta, TextDelta):
            return [self._chunk(ChoiceDelta(content=delta.text))] if delta.text else []
        if isinstance(delta, InputJSONDelta):
            if not delta.partial_json:
                return []
            if event.index in self._json_blocks:
                return [self._chunk(ChoiceDelta(content=delta.partial_json))]
            if event.index not in self._tool_index:
                raise UpstreamError("the upstream sent tool input for a block it never started")
            call = ToolCall(
                index=self._tool_index[event.index],
                type=None,
                function=FunctionCall(arguments=delta.partial_json),
            )
            return [self._chunk(ChoiceDelta(tool_calls=[call]))]
        if isinstance(delta, GenericDelta) and delta.type == "thinking_delta":
            thinking = (delta.model_extra or {}).get("thinking")
            if thinking:
                return [self._chunk(ChoiceDelta.model_validate({"reasoning_content": thinking}))]
        return []

    def _chunk(self, delta: ChoiceDelta, finish_reason: str | None = None) -> ChatCompletionChunk:
        choice = ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)
        return ChatCompletionChunk(id=self.id, model=self.model, choices=[choice])
