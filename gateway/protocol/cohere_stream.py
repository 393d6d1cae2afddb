"""Cohere v2 chat stream events onto canonical chat chunks.

`message-start` opens the answer (a role chunk); `content-delta` carries text (or, in a
`thinking` content block, reasoning); `tool-plan-delta` reasoning; `tool-call-start` a whole
call's id and name (and any first arguments) and `tool-call-delta` more arguments;
`message-end` the finish reason and usage. Citation and debug events carry nothing a chat
client reads. The stream is complete only at `message-end`.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import UpstreamError
from gateway.protocol.cohere import finish_reason, tool_call, usage
from gateway.protocol.openai import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkChoice,
    FunctionCall,
    ToolCall,
    new_id,
)


class CohereStreamTranslator:
    """Turns `/v2/chat` stream events, one at a time, into chat chunks."""

    def __init__(self, *, model: str, where: str = "the upstream") -> None:
        self.model = model
        self.finished = False
        self._where = where
        self._id = new_id("chatcmpl")
        self._thinking: set[int] = set()  # content blocks that carry reasoning
        self._calls = 0

    def feed(self, event: Any) -> list[ChatCompletionChunk]:
        """The chunks for one event (a dict); `UpstreamError` for one that is not Cohere's."""
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise UpstreamError(f"{self._where} sent a stream event that is not Cohere's")
        kind = event["type"]
        message = (event.get("delta") or {}).get("message") or {}
        if kind == "message-start":
            if event.get("id"):
                self._id = f"chatcmpl-{event['id']}"
            return [self._chunk(ChoiceDelta(role="assistant", content=""))]
        if kind == "content-start":
            if (message.get("content") or {}).get("type") == "thinking":
                self._thinking.add(int(event.get("index") or 0))
            return []
        if kind == "content-delta":
            content = message.get("content") or {}
            if int(event.get("index") or 0) in self._thinking or "thinking" in content:
                return self._reasoning(content.get("thinking") or content.get("text") or "")
            text = content.get("text") or ""
            return [self._chunk(ChoiceDelta(content=text))] if text else []
        if kind == "tool-plan-delta":
            return self._reasoning(message.get("tool_plan") or "")
        if kind == "tool-call-start":
            call = tool_call(message.get("tool_calls") or {})
            call.index = self._calls
            self._calls += 1
            return [self._chunk(ChoiceDelta(tool_calls=[call]))]
        if kind == "tool-call-delta":
            function = (message.get("tool_calls") or {}).get("function") or {}
            arguments = function.get("arguments") or ""
            if not arguments:
                return []
            more = ToolCall(
                index=self._calls - 1, type=None, function=FunctionCall(arguments=arguments)
            )
            return [self._chunk(ChoiceDelta(tool_calls=[more]))]
        if kind == "message-end":
            end = event.get("delta") or {}
            if end.get("error"):
                raise UpstreamError(f"{self._where} failed mid-stream: {end['error']}")
            finish = finish_reason(end.get("finish_reason"), where=self._where)
            if finish == "stop" and self._calls:
                finish = "tool_calls"
            self.finished = True
            return [
                self._chunk(ChoiceDelta(), finish=finish),
                ChatCompletionChunk(id=self._id, model=self.model, usage=usage(end.get("usage"))),
            ]
        return []  # citations, debug events, content-end, tool-call-end

    def _reasoning(self, text: str) -> list[ChatCompletionChunk]:
        if not text:
            return []
        return [self._chunk(ChoiceDelta.model_validate({"reasoning_content": text}))]

    def _chunk(self, delta: ChoiceDelta, finish: str | None = None) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id, model=self.model, choices=[ChunkChoice(delta=delta, finish_reason=finish)]
        )
