"""A canonical (OpenAI) chat chunk stream as Anthropic's exact stream event sequence, for
`POST /v1/messages` clients (the whole-answer and request halves are in
`anthropic_convert.py`).

Lossy points: message_start reports 0 tokens, since chat streams report usage only at the
end; message_delta carries the totals (input_tokens too, as Anthropic's own stream does).
Upstream `reasoning_content` is not relayed: Anthropic thinking blocks need a signature.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.errors import UpstreamError
from gateway.protocol.anthropic import (
    ContentBlockDeltaEvent,
    ContentBlockStartEvent,
    ContentBlockStopEvent,
    InputJSONDelta,
    Message,
    MessageDelta,
    MessageDeltaEvent,
    MessageDeltaUsage,
    MessageStartEvent,
    MessageStopEvent,
    StreamEvent,
    TextBlock,
    TextDelta,
    ToolUseBlock,
    new_tool_use_id,
)
from gateway.protocol.anthropic_convert import anthropic_usage, message_id, stop_reason_of
from gateway.protocol.openai import ChatCompletionChunk, ToolCall
from gateway.protocol.openai import Usage as ChatUsage


class _BlockStream:
    """Turns chunk deltas into Anthropic's strictly sequential content blocks."""

    def __init__(self) -> None:
        self.index = -1
        self.open_kind: str | None = None
        self.open_tool: int | None = None
        self.open_id: str | None = None
        self.closed_tools: set[int] = set()
        self.closed_ids: set[str] = set()

    def close(self) -> list[StreamEvent]:
        if self.open_kind is None:
            return []
        if self.open_tool is not None:
            self.closed_tools.add(self.open_tool)
        if self.open_id is not None:
            self.closed_ids.add(self.open_id)
        self.open_kind, self.open_tool, self.open_id = None, None, None
        return [ContentBlockStopEvent(index=self.index)]

    def text(self, text: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self.open_kind != "text":
            events += self.close()
            self.index += 1
            self.open_kind = "text"
            events.append(
                ContentBlockStartEvent(index=self.index, content_block=TextBlock(text=""))
            )
        events.append(ContentBlockDeltaEvent(index=self.index, delta=TextDelta(text=text)))
        return events

    def tool(self, call: ToolCall, position: int) -> list[StreamEvent]:
        tool_index = call.index if call.index is not None else position
        # Some upstreams give every call index 0: a new id starts a new call as well.
        new_id = call.id is not None and call.id != self.open_id
        events: list[StreamEvent] = []
        if self.open_kind != "tool" or self.open_tool != tool_index or new_id:
            if call.id in self.closed_ids or (call.id is None and tool_index in self.closed_tools):
                # Anthropic blocks cannot be reopened; interleaved arguments cannot be relayed.
                raise UpstreamError("the upstream interleaved tool call arguments")
            events += self.close()
            self.index += 1
            self.open_kind, self.open_tool = "tool", tool_index
            self.open_id = call.id or new_tool_use_id()
            block = ToolUseBlock(id=self.open_id, name=call.function.name or "", input={})
            events.append(ContentBlockStartEvent(index=self.index, content_block=block))
        if call.function.arguments:
            delta = InputJSONDelta(partial_json=call.function.arguments)
            events.append(ContentBlockDeltaEvent(index=self.index, delta=delta))
        return events


async def chunks_to_events(
    chunks: AsyncIterator[ChatCompletionChunk], *, model: str
) -> AsyncIterator[StreamEvent]:
    """Anthropic's stream event sequence for a canonical chunk stream.

    Yields message_start (at the first chunk), content_block_start / _delta / _stop for each
    text run and each tool call, then message_delta (stop reason, and the token counts of the
    final usage chunk) and message_stop once the chunks end. Only choice 0 is relayed.
    Raises `UpstreamError` when the chunk stream is empty.
    """
    blocks = _BlockStream()
    started = False
    finish_reason: str | None = None
    refused = False
    usage: ChatUsage | None = None
    async for chunk in chunks:
        if not started:
            started = True
            yield MessageStartEvent(message=Message(id=message_id(chunk.id), model=model))
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            for text in (delta.content, delta.refusal):
                if text:
                    refused = refused or text is delta.refusal
                    for event in blocks.text(text):
                        yield event
            for position, call in enumerate(delta.tool_calls or []):
                for event in blocks.tool(call, position):
                    yield event
            if choice.finish_reason is not None:
                finish_reason = choice.finish_reason
    if not started:
        raise UpstreamError("the upstream stream ended before its first chunk")
    for event in blocks.close():
        yield event
    stop_reason = stop_reason_of(finish_reason)
    if refused and finish_reason in (None, "stop"):
        stop_reason = "refusal"
    final = anthropic_usage(usage)
    yield MessageDeltaEvent(
        delta=MessageDelta(stop_reason=stop_reason),
        usage=MessageDeltaUsage(
            output_tokens=final.output_tokens,
            input_tokens=final.input_tokens if usage is not None else None,
            cache_read_input_tokens=final.cache_read_input_tokens,
        ),
    )
    yield MessageStopEvent()
