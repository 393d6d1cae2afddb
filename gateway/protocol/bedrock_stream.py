"""ConverseStream events onto canonical chat chunks.

The events (already unframed from AWS's event-stream encoding) are `messageStart` (a role
chunk), `contentBlockStart` (a tool call's id and name), `contentBlockDelta` (text, a tool
call's input JSON in pieces, or reasoning), `contentBlockStop`, `messageStop` (the finish
reason) and `metadata` (usage). The answer is complete at `messageStop`; `metadata`, which
follows it, gives the closing usage chunk.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import UpstreamError
from gateway.protocol.bedrock import converse_usage, stop_reason
from gateway.protocol.openai import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkChoice,
    FunctionCall,
    ToolCall,
    new_id,
)


class ConverseStreamTranslator:
    """Turns ConverseStream events, one at a time, into chat chunks."""

    def __init__(self, *, model: str) -> None:
        self.model = model
        self.id = new_id("chatcmpl")
        self.finished = False
        self._tool_index: dict[int, int] = {}  # content block index -> tool call index

    def feed(self, event_type: str, payload: Any) -> list[ChatCompletionChunk]:
        """The chunks for one event; `UpstreamError` for a payload that is not an object."""
        if not isinstance(payload, dict):
            raise UpstreamError(f"the upstream sent a {event_type} event that is not an object")
        if event_type == "messageStart":
            return [self._chunk(ChoiceDelta(role="assistant", content=""))]
        if event_type == "contentBlockStart":
            use = (payload.get("start") or {}).get("toolUse")
            if not isinstance(use, dict):
                return []
            index = len(self._tool_index)
            self._tool_index[int(payload.get("contentBlockIndex") or 0)] = index
            call = ToolCall(
                index=index,
                id=use.get("toolUseId"),
                function=FunctionCall(name=use.get("name"), arguments=""),
            )
            return [self._chunk(ChoiceDelta(tool_calls=[call]))]
        if event_type == "contentBlockDelta":
            return self._delta(int(payload.get("contentBlockIndex") or 0), payload.get("delta"))
        if event_type == "messageStop":
            finish = stop_reason(payload.get("stopReason"), tool_calls=bool(self._tool_index))
            self.finished = True
            return [self._chunk(ChoiceDelta(), finish=finish)]
        if event_type == "metadata":
            usage = converse_usage(payload.get("usage"))
            return [ChatCompletionChunk(id=self.id, model=self.model, usage=usage)]
        return []  # contentBlockStop

    def _delta(self, block: int, delta: Any) -> list[ChatCompletionChunk]:
        if not isinstance(delta, dict):
            return []
        if isinstance(delta.get("text"), str) and delta["text"]:
            return [self._chunk(ChoiceDelta(content=delta["text"]))]
        use = delta.get("toolUse")
        if isinstance(use, dict) and block in self._tool_index:
            call = ToolCall(
                index=self._tool_index[block],
                type=None,
                function=FunctionCall(arguments=str(use.get("input") or "")),
            )
            return [self._chunk(ChoiceDelta(tool_calls=[call]))]
        reasoning = delta.get("reasoningContent")
        if isinstance(reasoning, dict) and reasoning.get("text"):
            return [
                self._chunk(ChoiceDelta.model_validate({"reasoning_content": reasoning["text"]}))
            ]
        return []

    def _chunk(self, delta: ChoiceDelta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.id, model=self.model, choices=[ChunkChoice(delta=delta, finish_reason=finish)]
        )
