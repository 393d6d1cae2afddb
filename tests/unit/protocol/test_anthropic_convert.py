"""Anthropic Messages clients onto canonical chat and back (`anthropic_convert`), and round
trips through the adapter-side translation (`anthropic_upstream`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic.types
import pytest
from pydantic import TypeAdapter, ValidationError

from gateway.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from gateway.protocol.anthropic import Message, MessagesRequest, StreamEvent
from gateway.protocol.anthropic_convert import chat_to_message, messages_to_chat_request
from gateway.protocol.anthropic_convert_stream import chunks_to_events
from gateway.protocol.anthropic_upstream import anthropic_to_chat, chat_request_to_anthropic
from gateway.protocol.anthropic_upstream_stream import AnthropicStreamTranslator
from gateway.protocol.openai import ChatCompletion, ChatCompletionChunk

SDK_EVENT: TypeAdapter[Any] = TypeAdapter(anthropic.types.RawMessageStreamEvent)


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    return MessagesRequest.model_validate({**body, **fields})


def completion(
    message: dict[str, Any], finish: str | None = "stop", **usage: Any
) -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "model": "upstream-model",
            "choices": [
                {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
            ],
            "usage": usage or {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    )


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any
) -> ChatCompletionChunk:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return ChatCompletionChunk.model_validate(
        {"id": "chatcmpl-9", "model": "u", "choices": choices, **extra}
    )


async def stream_of(*chunks: ChatCompletionChunk) -> AsyncIterator[ChatCompletionChunk]:
    for item in chunks:
        yield item


async def events_for(*chunks: ChatCompletionChunk) -> list[dict[str, Any]]:
    events = [e async for e in chunks_to_events(stream_of(*chunks), model="alias")]
    dumped = [e.model_dump(mode="json", exclude_none=True) for e in events]
    for event, data in zip(events, dumped, strict=True):
        assert data["type"] == event.type
        SDK_EVENT.validate_python(data)  # the shape the Anthropic SDK parses
    return dumped


# --- wire models ------------------------------------------------------------------------------


def test_request_model_enforces_anthropic_limits() -> None:
    for bad in ({"max_tokens": 0}, {"temperature": 1.5}, {"messages": []}):
        with pytest.raises(ValidationError):
            request(**bad)


def test_request_model_keeps_unknown_fields_and_blocks() -> None:
    parsed = request(
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": [{"type": "document", "source": {"type": "text"}}]}],
    )

    assert parsed.model_extra == {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    assert parsed.wire()["messages"][0]["content"][0] == {
        "type": "document",
        "source": {"type": "text"},
    }


def test_message_dump_keeps_the_nulls_anthropic_sends() -> None:
    data = Message(model="m").model_dump(mode="json", exclude_none=True)

    assert data["stop_reason"] is None and data["stop_sequence"] is None
    assert data["type"] == "message" and data["role"] == "assistant"
    anthropic.types.Message.model_validate(data)


# --- request: Messages -> chat ----------------------------------------------------------------


def test_string_system_becomes_the_first_system_message() -> None:
    chat = messages_to_chat_request(request(system="be brief"))

    assert [m.model_dump(exclude_none=True) for m in chat.messages] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]


def test_system_blocks_are_joined_into_one_system_message() -> None:
    chat = messages_to_chat_request(
        request(system=[{"type": "text", "text": "one"}, {"type": "text", "text": "two"}])
    )

    assert chat.messages[0].role == "system"
    assert chat.messages[0].content == "one\n\ntwo"


def test_sampling_fields_map_and_top_k_travels_as_an_extra() -> None:
    chat = messages_to_chat_request(
        request(
            max_tokens=64,
            temperature=0.3,
            top_p=0.8,
            top_k=5,
            stop_sequences=["X", "Y"],
            metadata={"user_id": "u-1"},
        )
    )

    assert chat.max_tokens == 64
    assert chat.temperature == 0.3 and chat.top_p == 0.8
    assert chat.stop == ["X", "Y"]
    assert chat.user == "u-1"
    assert chat.model_extra == {"top_k": 5}
    assert chat.stream is False and chat.stream_options is None


def test_stream_asks_for_usage() -> None:
    chat = messages_to_chat_request(request(stream=True))

    assert chat.stream is True
    assert chat.stream_options is not None and chat.stream_options.include_usage is True


def test_unknown_request_fields_are_carried_to_the_upstream() -> None:
    chat = messages_to_chat_request(request(thinking={"type": "enabled", "budget_tokens": 2048}))

    assert chat.model_extra == {"thinking": {"type": "enabled", "budget_tokens": 2048}}


def test_more_than_four_stop_sequences_are_refused() -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        messages_to_chat_request(request(stop_sequences=list("abcde")))

    assert refused.value.param == "stop_sequences"


def test_tool_use_blocks_become_assistant_tool_calls() -> None:
    assistant = {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "sig"},
            {"type": "text", "text": "Let me check."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
    }
    chat = messages_to_chat_request(
        request(messages=[{"role": "user", "content": "w?"}, assistant])
    )

    message = chat.messages[1]
    assert message.role == "assistant"
    assert message.content == "Let me check."  # the thinking block is dropped
    (call,) = message.tool_calls or []
    assert call.id == "toolu_1" and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"city": "Oslo"}


def test_tool_result_blocks_become_tool_messages_before_the_user_text() -> None:
    results = {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
            {
                "type": "tool_result",
                "tool_use_id": "t2",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
            {"type": "tool_result", "tool_use_id": "t3", "content": "boom", "is_error": True},
            {"type": "text", "text": "thanks"},
        ],
    }
    chat = messages_to_chat_request(request(messages=[results]))

    assert [m.model_dump(exclude_none=True) for m in chat.messages] == [
        {"role": "tool", "tool_call_id": "t1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "t2", "content": "a\nb"},
        {"role": "tool", "tool_call_id": "t3", "content": "Error: boom"},
        {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
    ]


def test_images_become_image_url_parts() -> None:
    content = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}},
    ]
    chat = messages_to_chat_request(request(messages=[{"role": "user", "content": content}]))

    parts = [p.model_dump(exclude_none=True) for p in chat.messages[0].content or []]  # type: ignore[union-attr]
    assert parts == [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
    ]


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "x"}}],
        [
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
            }
        ],
    ],
)
def test_user_content_chat_cannot_carry_is_refused(content: list[dict[str, Any]]) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        messages_to_chat_request(request(messages=[{"role": "user", "content": content}]))

    assert refused.value.param == "messages"


def test_tools_become_function_tools() -> None:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    chat = messages_to_chat_request(
        request(tools=[{"name": "search", "description": "Search", "input_schema": schema}])
    )

    assert [t.model_dump(exclude_none=True) for t in chat.tools or []] == [
        {
            "type": "function",
            "function": {"name": "search", "description": "Search", "parameters": schema},
        }
    ]


def test_server_tools_are_refused() -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        messages_to_chat_request(
            request(tools=[{"type": "web_search_20250305", "name": "web_search"}])
        )

    assert refused.value.param == "tools"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ({"type": "auto"}, "auto"),
        ({"type": "any"}, "required"),
        ({"type": "none"}, "none"),
        ({"type": "tool", "name": "search"}, {"type": "function", "function": {"name": "search"}}),
    ],
)
def test_tool_choice_maps_to_openai(choice: dict[str, Any], expected: Any) -> None:
    tools = [{"name": "search", "input_schema": {"type": "object"}}]
    chat = messages_to_chat_request(request(tools=tools, tool_choice=choice))

    assert chat.tool_choice == expected
    assert chat.parallel_tool_calls is None


def test_disable_parallel_tool_use_becomes_parallel_tool_calls_false() -> None:
    chat = messages_to_chat_request(
        request(
            tools=[{"name": "s", "input_schema": {"type": "object"}}],
            tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        )
    )

    assert chat.parallel_tool_calls is False


def test_tool_choice_tool_without_name_is_invalid() -> None:
    with pytest.raises(InvalidRequest):
        messages_to_chat_request(request(tool_choice={"type": "tool"}))


# --- whole response: chat -> Message ----------------------------------------------------------


def test_chat_answer_becomes_a_message() -> None:
    message = chat_to_message(completion({"content": "Hello!"}), model="alias")

    data = message.model_dump(mode="json", exclude_none=True)
    assert data == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "alias",
        "content": [{"type": "text", "text": "Hello!"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    anthropic.types.Message.model_validate(data)


def test_model_defaults_to_the_upstream_model() -> None:
    assert chat_to_message(completion({"content": "x"})).model == "upstream-model"


@pytest.mark.parametrize(
    ("finish", "stop_reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        (None, "end_turn"),
    ],
)
def test_finish_reason_maps_to_stop_reason(finish: str | None, stop_reason: str) -> None:
    assert chat_to_message(completion({"content": "x"}, finish)).stop_reason == stop_reason


def test_tool_calls_become_tool_use_blocks_with_parsed_input() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": [1]}'}},
        {"id": "call_2", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    message = chat_to_message(completion({"content": None, "tool_calls": calls}, "tool_calls"))

    assert [b.model_dump() for b in message.content] == [
        {"type": "tool_use", "id": "call_1", "name": "f", "input": {"a": [1]}},
        {"type": "tool_use", "id": "call_2", "name": "g", "input": {}},
    ]
    assert message.stop_reason == "tool_use"


@pytest.mark.parametrize("arguments", ['{"a": ', "[1, 2]"])
def test_tool_arguments_that_are_not_a_json_object_raise(arguments: str) -> None:
    calls = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]

    with pytest.raises(UpstreamError):
        chat_to_message(completion({"content": None, "tool_calls": calls}, "tool_calls"))


def test_refusal_becomes_text_with_stop_reason_refusal() -> None:
    message = chat_to_message(completion({"content": None, "refusal": "I can't."}))

    assert [b.model_dump() for b in message.content] == [{"type": "text", "text": "I can't."}]
    assert message.stop_reason == "refusal"


def test_cached_prompt_tokens_become_cache_reads() -> None:
    answer = completion(
        {"content": "x"},
        prompt_tokens=100,
        completion_tokens=7,
        total_tokens=107,
        prompt_tokens_details={"cached_tokens": 60},
    )

    usage = chat_to_message(answer).usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (40, 60, 7)


# --- streamed response: chunks -> events ------------------------------------------------------


@pytest.mark.asyncio
async def test_text_stream_becomes_anthropics_exact_event_sequence() -> None:
    events = await events_for(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        chunk(usage={"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}),
    )

    assert events == [
        {
            "type": "message_start",
            "message": {
                "id": "msg_9",
                "type": "message",
                "role": "assistant",
                "model": "alias",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            },
        },
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 2, "input_tokens": 12},
        },
        {"type": "message_stop"},
    ]


@pytest.mark.asyncio
async def test_tool_call_stream_becomes_a_tool_use_block_with_input_json_deltas() -> None:
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    events = await events_for(
        chunk({"role": "assistant", "content": "Checking."}),
        chunk({"tool_calls": [first]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Oslo"}'}}]}),
        chunk({}, "tool_calls"),
        chunk(usage={"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}),
    )

    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[4] == {
        "type": "content_block_start",
        "index": 1,
        "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}},
    }
    fragments = [e["delta"]["partial_json"] for e in events[5:7]]
    assert all(e["index"] == 1 for e in events[5:8])
    assert json.loads("".join(fragments)) == {"city": "Oslo"}
    assert events[8]["delta"]["stop_reason"] == "tool_use"
    assert events[8]["usage"]["output_tokens"] == 9


@pytest.mark.asyncio
async def test_parallel_tool_calls_become_consecutive_blocks() -> None:
    def call(index: int, name: str) -> dict[str, Any]:
        return {"index": index, "id": f"c{index}", "function": {"name": name, "arguments": "{}"}}

    events = await events_for(
        chunk({"tool_calls": [call(0, "a"), call(1, "b")]}), chunk({}, "tool_calls")
    )

    starts = [e for e in events if e["type"] == "content_block_start"]
    assert [(e["index"], e["content_block"]["name"]) for e in starts] == [(0, "a"), (1, "b")]
    stops = [e["index"] for e in events if e["type"] == "content_block_stop"]
    assert stops == [0, 1]


@pytest.mark.asyncio
async def test_calls_sharing_index_zero_but_not_their_id_become_separate_blocks() -> None:
    def call(call_id: str | None, args: str, name: str | None = None) -> dict[str, Any]:
        fn = {"arguments": args} | ({"name": name} if name else {})
        return {"index": 0, **({"id": call_id} if call_id else {}), "function": fn}

    events = await events_for(
        chunk({"tool_calls": [call("c1", "{", "a")]}),
        chunk({"tool_calls": [call(None, "}")]}),
        chunk({"tool_calls": [call("c2", "{}", "b")]}),
        chunk({"tool_calls": [call("c2", "")]}),
        chunk({}, "tool_calls"),
    )

    starts = [e["content_block"]["id"] for e in events if e["type"] == "content_block_start"]
    assert starts == ["c1", "c2"]
    deltas = [
        (e["index"], e["delta"]["partial_json"])
        for e in events
        if e["type"] == "content_block_delta"
    ]
    assert deltas == [(0, "{"), (0, "}"), (1, "{}")]


@pytest.mark.asyncio
async def test_interleaved_tool_arguments_raise() -> None:
    def call(index: int, args: str, name: str | None = None) -> dict[str, Any]:
        fn = {"arguments": args} | ({"name": name} if name else {})
        return {"index": index, **({"id": f"c{index}"} if name else {}), "function": fn}

    with pytest.raises(UpstreamError, match="interleaved"):
        await events_for(
            chunk({"tool_calls": [call(0, "{", "a")]}),
            chunk({"tool_calls": [call(1, "{", "b")]}),
            chunk({"tool_calls": [call(0, "}")]}),
        )


@pytest.mark.asyncio
async def test_stream_without_usage_reports_zero_output_tokens() -> None:
    events = await events_for(chunk({"content": "x"}), chunk({}, "length"))

    assert events[-2]["delta"]["stop_reason"] == "max_tokens"
    assert events[-2]["usage"] == {"output_tokens": 0}


@pytest.mark.asyncio
async def test_empty_chunk_stream_raises() -> None:
    with pytest.raises(UpstreamError):
        await events_for()


# --- round trips ------------------------------------------------------------------------------


def test_messages_request_survives_the_round_trip_through_chat() -> None:
    original = {
        "model": "claude",
        "max_tokens": 300,
        "system": "be brief",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "weather in Oslo?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Oslo"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "text", "text": "and tomorrow?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather",
                "input_schema": {"type": "object", "properties": {}},
            }
        ],
        "tool_choice": {"type": "any"},
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_k": 4,
    }
    chat = messages_to_chat_request(MessagesRequest.model_validate(original))

    assert chat_request_to_anthropic(chat) == original


def test_message_survives_the_round_trip_through_chat() -> None:
    original = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"x": 1}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 4},
    }
    back = chat_to_message(anthropic_to_chat(original, model="claude"))

    assert back.model_dump(mode="json", exclude_none=True) == original


@pytest.mark.asyncio
async def test_event_stream_survives_the_round_trip_through_chunks() -> None:
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_7",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        },
    }
    tool = {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}
    original = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": tool},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"x": 1}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 6, "input_tokens": 0},
        },
        {"type": "message_stop"},
    ]
    translator = AnthropicStreamTranslator(model="claude")
    chunks = [
        c
        for event in [*original[:3], {"type": "ping"}, *original[3:]]
        for c in translator.feed(event)
    ]

    events: list[StreamEvent] = [
        e async for e in chunks_to_events(stream_of(*chunks), model="claude")
    ]

    assert [e.model_dump(mode="json", exclude_none=True) for e in events] == original
