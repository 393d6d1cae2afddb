"""An upstream's Responses API event stream as canonical chat chunks (the stream half of
`responses_upstream.py`).

    response.created                         -> a chunk with the assistant role
    response.output_text.delta / refusal.delta -> content / refusal deltas
    response.output_item.added (function_call) -> a tool call opening (id, name)
    response.function_call_arguments.delta   -> argument fragments of that call
    response.completed / response.incomplete -> the finish reason, then a usage chunk
    response.failed, error                   -> UpstreamError

The other events (in_progress, content parts, the `.done` events, reasoning) carry nothing
a chat chunk needs, except that a call whose arguments arrive only in its `.done` event
still gets them. The stream is complete only at `response.completed` or
`response.incomplete` (`finished`): a caller treats an earlier end as a broken stream.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import UpstreamError
from gateway.protocol.openai import (
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkChoice,
    FunctionCall,
    ToolCall,
)
from gateway.protocol.responses_upstream import chat_usage, finish_reason


class ResponsesStreamTranslator:
    """Feeds one upstream response's events in order; `feed` returns the chunks each adds."""

    def __init__(self, *, model: str) -> None:
        self._model = model
        self._id = "chatcmpl-responses"
        self._created: int | None = None
        self._calls: dict[str, int] = {}  # tool index by the call item's id
        self._arguments: dict[str, bool] = {}  # whether a call's arguments were streamed
        self.finished = False

    def feed(self, event: dict[str, Any]) -> list[ChatCompletionChunk]:
        """The chunks for one event. Raises `UpstreamError` for `response.failed`, `error`,
        an event after the end, or a call's arguments with no call opened."""
        if self.finished:
            raise UpstreamError("the upstream sent events after its response ended")
        kind = event.get("type")
        if kind == "error":
            raise UpstreamError(f"the upstream failed mid-stream: {_message(event)}")
        if kind == "response.failed":
            error = (event.get("response") or {}).get("error")
            raise UpstreamError(f"the upstream response failed: {_message(error)}")
        if kind == "response.created":
            response = event.get("response") or {}
            self._id = f"chatcmpl-{response.get('id') or 'responses'}"
            created = response.get("created_at")
            self._created = created if isinstance(created, int) else None
            return [self._chunk(ChoiceDelta(role="assistant", content=""))]
        if kind == "response.output_text.delta":
            return [self._chunk(ChoiceDelta(content=str(event.get("delta") or "")))]
        if kind == "response.refusal.delta":
            return [self._chunk(ChoiceDelta(refusal=str(event.get("delta") or "")))]
        if kind == "response.output_item.added":
            return self._opened(event.get("item"))
        if kind == "response.function_call_arguments.delta":
            index = self._call_index(event.get("item_id"))
            self._arguments[str(event.get("item_id"))] = True
            return [self._arguments_chunk(index, str(event.get("delta") or ""))]
        if kind == "response.output_item.done":
            return self._closed(event.get("item"))
        if kind in ("response.completed", "response.incomplete"):
            return self._ended(event.get("response") or {})
        return []

    def _opened(self, item: Any) -> list[ChatCompletionChunk]:
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return []
        index = len(self._calls)
        self._calls[str(item.get("id"))] = index
        call = ToolCall(
            index=index,
            id=str(item.get("call_id") or ""),
            function=FunctionCall(name=str(item.get("name") or ""), arguments=""),
        )
        return [self._chunk(ChoiceDelta(tool_calls=[call]))]

    def _closed(self, item: Any) -> list[ChatCompletionChunk]:
        # A call whose arguments came whole in the done item, not as deltas.
        if not isinstance(item, dict) or item.get("type") != "function_call":
            return []
        item_id = str(item.get("id"))
        if self._arguments.get(item_id) or not item.get("arguments"):
            return []
        self._arguments[item_id] = True
        return [self._arguments_chunk(self._call_index(item_id), str(item["arguments"]))]

    def _ended(self, response: dict[str, Any]) -> list[ChatCompletionChunk]:
        self.finished = True
        reason = finish_reason(
            response.get("status"), response.get("incomplete_details"), bool(self._calls)
        )
        chunks = [self._chunk(ChoiceDelta(), finish_reason=reason)]
        usage = chat_usage(response.get("usage"))
        if usage is not None:
            chunks.append(
                ChatCompletionChunk(
                    id=self._id, model=self._model, choices=[], usage=usage, **self._when()
                )
            )
        return chunks

    def _call_index(self, item_id: Any) -> int:
        index = self._calls.get(str(item_id))
        if index is None:
            raise UpstreamError("the upstream streamed arguments of a call it never opened")
        return index

    def _arguments_chunk(self, index: int, arguments: str) -> ChatCompletionChunk:
        call = ToolCall(index=index, type=None, function=FunctionCall(arguments=arguments))
        return self._chunk(ChoiceDelta(tool_calls=[call]))

    def _chunk(
        self, delta: ChoiceDelta, *, finish_reason: str | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self._id,
            model=self._model,
            choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish_reason)],
            **self._when(),
        )

    def _when(self) -> dict[str, Any]:
        return {"created": self._created} if self._created is not None else {}


def _message(error: Any) -> str:
    if isinstance(error, dict):
        code = error.get("code") or error.get("type") or "error"
        return f"{code}: {error.get('message') or 'no message'}"
    return "no error given"
