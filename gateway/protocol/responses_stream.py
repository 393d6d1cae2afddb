"""A canonical (OpenAI) chat chunk stream as the Responses API's typed event sequence, for
`POST /v1/responses` clients with `stream: true` (the request and whole-answer halves are in
`responses_convert.py`).

    response.created, response.in_progress
    per text run:   response.output_item.added, response.content_part.added,
                    response.output_text.delta ..., response.output_text.done,
                    response.content_part.done, response.output_item.done
    per tool call:  response.output_item.added, response.function_call_arguments.delta ...,
                    response.function_call_arguments.done, response.output_item.done
    response.completed (or response.incomplete when the answer was cut)

Every event carries a `sequence_number`, counted by one `ResponseEvents` per response, so
that a stream that breaks after it started ends with `error` and `response.failed` that
continue the count. Only choice 0 is relayed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gateway.errors import GatewayError, PolicyViolation, RateLimited, UpstreamError
from gateway.protocol.openai import ChatCompletionChunk, ToolCall
from gateway.protocol.openai import Usage as ChatUsage
from gateway.protocol.responses import (
    FunctionCallItem,
    OutputMessage,
    OutputText,
    Response,
    ResponseError,
    StreamEvent,
    new_item_id,
)
from gateway.protocol.responses_convert import finished


class ResponseEvents:
    """The event sequence of one streamed response. `final` is the finished response once
    the chunks ended (None before, or when the stream failed)."""

    def __init__(self, shell: Response) -> None:
        self._shell = shell
        self._seq = 0
        self._output: list[OutputMessage | FunctionCallItem] = []
        self._text: OutputMessage | None = None  # the message item being streamed
        self._text_parts: list[str] = []
        self._calls: dict[int, FunctionCallItem] = {}  # open tool calls by chat index
        self._call_ids: dict[str, int] = {}
        self.final: Response | None = None

    def event(self, kind: str, **fields: Any) -> StreamEvent:
        """The next event of the sequence."""
        event = StreamEvent(type=kind, sequence_number=self._seq, **fields)
        self._seq += 1
        return event

    async def events(
        self, chunks: AsyncIterator[ChatCompletionChunk]
    ) -> AsyncIterator[StreamEvent]:
        """The whole sequence for `chunks`. Raises `UpstreamError` when the chunk stream is
        empty; an error raised by `chunks` passes through (see `failure`)."""
        started = False
        finish_reason: str | None = None
        usage: ChatUsage | None = None
        async for chunk in chunks:
            if not started:
                started = True
                yield self.event("response.created", response=self._shell.wire())
                yield self.event("response.in_progress", response=self._shell.wire())
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices:
                if choice.index != 0:
                    continue
                for text in (choice.delta.content, choice.delta.refusal):
                    if text:
                        for event in self._text_delta(text):
                            yield event
                for position, call in enumerate(choice.delta.tool_calls or []):
                    for event in self._call_delta(call, position):
                        yield event
                if choice.finish_reason is not None:
                    finish_reason = choice.finish_reason
        if not started:
            raise UpstreamError("the upstream stream ended before its first chunk")
        for event in self._close_text():
            yield event
        for event in self._close_calls():
            yield event
        if not self._output:  # an empty answer is still one (empty) message, as OpenAI sends
            for event in [*self._text_delta(""), *self._close_text()]:
                yield event
        self.final = finished(self._shell, self._output, finish_reason, usage)
        kind = "response.completed" if self.final.status == "completed" else "response.incomplete"
        yield self.event(kind, response=self.final.wire())

    def failure(self, error: GatewayError) -> list[StreamEvent]:
        """The events that end a stream which broke after it started: `error`, then
        `response.failed` with what had been produced so far."""
        failed = self._shell.model_copy(
            update={
                "status": "failed",
                "output": self._output,
                "error": ResponseError(code=_failed_code(error), message=error.message),
            }
        )
        return [
            self.event("error", code=error.code, message=error.message, param=error.param),
            self.event("response.failed", response=failed.wire()),
        ]

    def _text_delta(self, text: str) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        if self._text is None:
            self._text = OutputMessage(status="in_progress")
            self._text_parts = []
            self._output.append(self._text)
            index = len(self._output) - 1
            events.append(
                self.event("response.output_item.added", output_index=index, item=self._text.wire())
            )
            events.append(self._part_event("response.content_part.added", ""))
        self._text_parts.append(text)
        if text:
            events.append(
                self.event(
                    "response.output_text.delta",
                    item_id=self._text.id,
                    output_index=self._output.index(self._text),
                    content_index=0,
                    delta=text,
                    logprobs=[],
                )
            )
        return events

    def _part_event(self, kind: str, text: str) -> StreamEvent:
        assert self._text is not None
        return self.event(
            kind,
            item_id=self._text.id,
            output_index=self._output.index(self._text),
            content_index=0,
            part=OutputText(text=text).wire(),
        )

    def _close_text(self) -> list[StreamEvent]:
        if self._text is None:
            return []
        text = "".join(self._text_parts)
        index = self._output.index(self._text)
        done = self._text.model_copy(
            update={"status": "completed", "content": [OutputText(text=text)]}
        )
        events = [
            self.event(
                "response.output_text.done",
                item_id=done.id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._part_event("response.content_part.done", text),
            self.event("response.output_item.done", output_index=index, item=done.wire()),
        ]
        self._output[index] = done
        self._text = None
        return events

    def _call_delta(self, call: ToolCall, position: int) -> list[StreamEvent]:
        index = call.index if call.index is not None else position
        # Some upstreams give every call index 0: a new id starts a new call as well.
        if call.id is not None and call.id in self._call_ids:
            index = self._call_ids[call.id]
        elif call.id is not None and index in self._calls:
            index = max(self._calls) + 1
            while index in self._calls:
                index += 1
        events: list[StreamEvent] = []
        item = self._calls.get(index)
        if item is None:
            events += self._close_text()  # text and calls are separate output items
            item = FunctionCallItem(
                id=new_item_id("fc"),
                call_id=call.id or new_item_id("call"),
                name=call.function.name or "",
                arguments="",
                status="in_progress",
            )
            self._calls[index] = item
            self._call_ids[item.call_id] = index
            self._output.append(item)
            events.append(
                self.event(
                    "response.output_item.added",
                    output_index=len(self._output) - 1,
                    item=item.wire(),
                )
            )
        elif call.function.name and not item.name:
            item.name = call.function.name
        if call.function.arguments:
            item.arguments += call.function.arguments
            events.append(
                self.event(
                    "response.function_call_arguments.delta",
                    item_id=item.id,
                    output_index=self._output.index(item),
                    delta=call.function.arguments,
                )
            )
        return events

    def _close_calls(self) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for item in self._calls.values():
            index = self._output.index(item)
            done = item.model_copy(update={"status": "completed"})
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    item_id=item.id,
                    output_index=index,
                    name=item.name,
                    arguments=item.arguments,
                )
            )
            events.append(
                self.event("response.output_item.done", output_index=index, item=done.wire())
            )
            self._output[index] = done
        self._calls.clear()
        return events


def _failed_code(error: GatewayError) -> str:
    # A failed response's error code is one of OpenAI's fixed set; the gateway's own code
    # travels in the `error` event before it.
    if isinstance(error, RateLimited):
        return "rate_limit_exceeded"
    if isinstance(error, PolicyViolation):
        return "invalid_prompt"
    return "server_error"
