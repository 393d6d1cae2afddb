"""Chat chunk streams as the Responses event sequence: the order OpenAI sends, a sequence
number on each, tool calls as function_call items, and a broken stream ending with `error`
and `response.failed` (the official SDK's event models parse every event)."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from gateway.api.wire import ResponsesWire
from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.protocol.openai import ChatCompletionChunk
from gateway.protocol.responses import ResponsesRequest
from gateway.protocol.responses_convert import response_shell
from gateway.protocol.responses_stream import ResponseEvents

EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **kw: Any) -> Any:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return ChatCompletionChunk.model_validate({"id": "c1", "model": "m", "choices": choices, **kw})


async def _chunks(*chunks: Any, fail: Exception | None = None) -> AsyncGenerator[Any, None]:
    for chunk in chunks:
        yield chunk
    if fail is not None:
        raise fail


def _shell() -> Any:
    request = ResponsesRequest(model="alias", input="hi")
    return response_shell(request, response_id="resp_1", store=False)


async def _events(chunks: AsyncGenerator[Any, None]) -> list[dict[str, Any]]:
    stream = ResponseEvents(_shell())
    out = [e.model_dump(mode="json") async for e in stream.events(chunks)]
    for event in out:
        EVENTS.validate_python(event)  # the SDK's typed models accept each one
    return out


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


@pytest.mark.asyncio
async def test_text_streams_in_openais_event_order_numbered_from_zero() -> None:
    events = await _events(
        _chunks(
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hello"}),
            _chunk({"content": " world"}),
            _chunk({}, "stop"),
            _chunk(usage=USAGE),
        )
    )
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[6]["text"] == "Hello world"
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["id"] == "resp_1"
    assert final["output"][0]["content"][0]["text"] == "Hello world"
    assert final["usage"]["input_tokens"] == 3 and final["usage"]["output_tokens"] == 2
    item_ids = {e["item_id"] for e in events if "item_id" in e}
    assert item_ids == {final["output"][0]["id"]}


@pytest.mark.asyncio
async def test_tool_calls_stream_as_function_call_items() -> None:
    first = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    second = {
        "index": 1,
        "id": "call_b",
        "type": "function",
        "function": {"name": "find", "arguments": "{}"},
    }
    events = await _events(
        _chunks(
            _chunk({"content": "Checking."}),
            _chunk({"tool_calls": [first]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"word":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]}),
            _chunk({"tool_calls": [second]}),
            _chunk({}, "tool_calls"),
        )
    )
    kinds = [e["type"] for e in events]
    assert kinds[:9] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",  # the text item closes when the first call starts
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
    ]
    assert kinds.count("response.function_call_arguments.done") == 2
    assert kinds[-1] == "response.completed"
    done = [e for e in events if e["type"] == "response.function_call_arguments.done"]
    assert [(d["name"], d["arguments"]) for d in done] == [
        ("lookup", '{"word":"x"}'),
        ("find", "{}"),
    ]
    output = events[-1]["response"]["output"]
    assert [o["type"] for o in output] == ["message", "function_call", "function_call"]
    assert [o.get("call_id") for o in output[1:]] == ["call_a", "call_b"]
    assert [e["output_index"] for e in done] == [1, 2]


@pytest.mark.asyncio
async def test_a_cut_answer_ends_with_response_incomplete() -> None:
    events = await _events(_chunks(_chunk({"content": "Par"}), _chunk({}, "length")))
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.asyncio
async def test_an_empty_upstream_stream_is_an_error() -> None:
    with pytest.raises(UpstreamError):
        await _events(_chunks())


@pytest.mark.asyncio
async def test_a_stream_broken_midway_ends_with_error_and_response_failed() -> None:
    wire = ResponsesWire(_shell())
    sent: list[bytes] = []
    failure = UpstreamTimeout("The upstream stopped answering.")
    with pytest.raises(UpstreamTimeout):
        async for data in wire.stream(
            _chunks(_chunk({"content": "Hel"}), _chunk({"content": "lo"}), fail=failure)
        ):
            sent.append(data)
    sent.append(wire.error_event(failure))
    events = [
        json.loads(line.removeprefix(b"data: "))
        for block in sent
        for line in block.split(b"\n")
        if line.startswith(b"data: ")
    ]
    for event in events:
        EVENTS.validate_python(event)
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert "response.completed" not in [e["type"] for e in events]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-2]["code"] == "upstream_timeout"
    failed = events[-1]["response"]
    assert failed["status"] == "failed" and failed["error"]["code"] == "server_error"
    assert failed["output"][0]["type"] == "message"


@pytest.mark.asyncio
async def test_a_stored_stream_is_kept_before_it_completes() -> None:
    kept: list[str] = []

    async def keep(response: Any) -> None:
        kept.append(response.output_text())

    wire = ResponsesWire(_shell(), keep)
    names = []
    async for data in wire.stream(_chunks(_chunk({"content": "Hi"}), _chunk({}, "stop"))):
        names.append(data.split(b"\n")[0])
        if data.startswith(b"event: response.completed"):
            assert kept == ["Hi"]  # stored before the client hears it completed
    assert names[-1] == b"event: response.completed"
