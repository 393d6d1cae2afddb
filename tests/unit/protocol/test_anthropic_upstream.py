"""Canonical chat onto Anthropic's Messages API and back: the Anthropic adapter's translation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from gateway.protocol.anthropic_upstream import (
    JSON_TOOL_NAME,
    anthropic_to_chat,
    chat_request_to_anthropic,
)
from gateway.protocol.anthropic_upstream_stream import AnthropicStreamTranslator
from gateway.protocol.openai import ChatCompletionChunk, ChatCompletionRequest

TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    messages = messages or ({"role": "user", "content": "hi"},)
    req = ChatCompletionRequest.model_validate({"model": "claude", "messages": messages, **fields})
    return chat_request_to_anthropic(req)


def answer(*content: dict[str, Any], stop_reason: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 3, **usage},
    }


# --- request ----------------------------------------------------------------------------------


def test_plain_request_has_model_messages_and_default_max_tokens() -> None:
    assert body() == {
        "model": "claude",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, 4096), ({"max_tokens": 10}, 10), ({"max_tokens": 10, "max_completion_tokens": 20}, 20)],
)
def test_max_completion_tokens_wins_over_max_tokens_over_the_default(
    fields: dict[str, Any], expected: int
) -> None:
    assert body(**fields)["max_tokens"] == expected


def test_default_max_tokens_is_configurable() -> None:
    req = ChatCompletionRequest.model_validate(
        {"model": "c", "messages": [{"role": "user", "content": "x"}]}
    )

    assert chat_request_to_anthropic(req, default_max_tokens=123)["max_tokens"] == 123


def test_one_system_message_becomes_a_string_system() -> None:
    result = body({"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"})

    assert result["system"] == "be brief"
    assert [m["role"] for m in result["messages"]] == ["user"]


def test_system_and_developer_messages_anywhere_become_system_blocks() -> None:
    result = body(
        {"role": "system", "content": "one"},
        {"role": "user", "content": "hi"},
        {"role": "developer", "content": [{"type": "text", "text": "two"}]},
    )

    assert result["system"] == [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    assert len(result["messages"]) == 1


def test_assistant_tool_calls_become_tool_use_blocks() -> None:
    call = {"id": "toolu_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    result = body(
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": "Sure.", "tool_calls": [call]},
    )

    assert result["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}},
        ],
    }


def test_consecutive_tool_results_and_following_user_text_merge_into_one_user_message() -> None:
    calls = [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "t2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
    ]
    result = body(
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "t1", "content": "one"},
        {"role": "tool", "tool_call_id": "t2", "content": [{"type": "text", "text": "two"}]},
        {"role": "user", "content": "thanks"},
    )

    assert [m["role"] for m in result["messages"]] == ["user", "assistant", "user"]
    assert result["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "t1", "content": "one"},
        {"type": "tool_result", "tool_use_id": "t2", "content": [{"type": "text", "text": "two"}]},
        {"type": "text", "text": "thanks"},
    ]


def test_invalid_tool_call_arguments_in_history_are_refused() -> None:
    call = {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    with pytest.raises(InvalidRequest):
        body({"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [call]})


@pytest.mark.parametrize(
    ("url", "source"),
    [
        (
            "data:image/jpeg;base64,QUJD",
            {"type": "base64", "media_type": "image/jpeg", "data": "QUJD"},
        ),
        ("https://x.test/a.png", {"type": "url", "url": "https://x.test/a.png"}),
    ],
)
def test_image_urls_become_image_sources(url: str, source: dict[str, Any]) -> None:
    part = {"type": "image_url", "image_url": {"url": url}}
    result = body({"role": "user", "content": [part]})

    assert result["messages"][0]["content"] == [{"type": "image", "source": source}]


@pytest.mark.parametrize("url", ["data:image/png,rawdata", "ftp://x/y.png"])
def test_unusable_image_urls_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest):
        body({"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]})


def test_pdf_file_parts_become_document_blocks() -> None:
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBE"}}
    result = body({"role": "user", "content": [part]})

    assert result["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
        }
    ]


def test_audio_parts_are_refused() -> None:
    part = {"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}
    with pytest.raises(UnsupportedParameter):
        body({"role": "user", "content": [part]})


def test_tools_stop_temperature_top_p_and_user_map() -> None:
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "description": "does f",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    result = body(tools=[tool], stop="END", temperature=0.4, top_p=0.5, user="u1")

    assert result["tools"] == [
        {"name": "f", "description": "does f", "input_schema": {"type": "object", "properties": {}}}
    ]
    assert result["stop_sequences"] == ["END"]
    assert (result["temperature"], result["top_p"]) == (0.4, 0.5)
    assert result["metadata"] == {"user_id": "u1"}
    assert "tool_choice" not in result


def test_tool_without_parameters_gets_an_empty_object_schema() -> None:
    result = body(tools=[{"type": "function", "function": {"name": "now"}}])

    assert result["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
    ],
)
def test_tool_choice_maps(choice: Any, expected: dict[str, Any]) -> None:
    assert body(tools=[TOOL], tool_choice=choice)["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    result = body(tools=[TOOL], parallel_tool_calls=False)

    assert result["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_unknown_tool_choice_is_invalid() -> None:
    with pytest.raises(InvalidRequest):
        body(tools=[TOOL], tool_choice="sometimes")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"seed": 1}, "seed"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"logit_bias": {"5": 1}}, "logit_bias"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"temperature": 1.2}, "temperature"),
    ],
)
def test_parameters_anthropic_cannot_honour_are_refused(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        body(**fields)

    assert refused.value.param == param


def test_no_op_values_of_refused_parameters_pass() -> None:
    result = body(n=1, logprobs=False, presence_penalty=0, frequency_penalty=0, temperature=1)

    assert "n" not in result and "logprobs" not in result and result["temperature"] == 1


def test_unknown_fields_pass_on_as_they_are() -> None:
    result = body(top_k=3, thinking={"type": "enabled", "budget_tokens": 1024})

    assert result["top_k"] == 3
    assert result["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_json_object_response_format_forces_the_json_tool() -> None:
    result = body(response_format={"type": "json_object"})

    assert result["tools"] == [
        {
            "name": JSON_TOOL_NAME,
            "description": "Answer with the requested JSON object.",
            "input_schema": {"type": "object"},
        }
    ]
    assert result["tool_choice"] == {"type": "tool", "name": JSON_TOOL_NAME}


def test_json_schema_response_format_uses_the_schema_as_the_tool_input() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    spec = {"name": "out", "description": "The output", "schema": schema}
    result = body(response_format={"type": "json_schema", "json_schema": spec})

    assert result["tools"] == [
        {"name": JSON_TOOL_NAME, "description": "The output", "input_schema": schema}
    ]


def test_text_response_format_changes_nothing() -> None:
    assert body(response_format={"type": "text"}) == body()


@pytest.mark.parametrize(
    "fields",
    [
        {"response_format": {"type": "json_object"}, "tools": [TOOL]},
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "array"}},
            }
        },
    ],
)
def test_json_response_formats_anthropic_cannot_express_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        body(**fields)

    assert refused.value.param == "response_format"


def test_clients_cannot_define_the_json_tool() -> None:
    tool = {"type": "function", "function": {"name": JSON_TOOL_NAME}}
    with pytest.raises(InvalidRequest):
        body(tools=[tool])


# --- whole response ---------------------------------------------------------------------------


def test_text_answer_becomes_a_chat_completion() -> None:
    chat = anthropic_to_chat(
        answer({"type": "text", "text": "Hi"}, {"type": "text", "text": "!"}), model="alias"
    )

    assert chat.wire()["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hi!"}, "finish_reason": "stop"}
    ]
    assert chat.id == "msg_1" and chat.model == "alias"
    assert chat.usage is not None
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens, chat.usage.total_tokens) == (
        10,
        3,
        13,
    )


def test_tool_use_becomes_tool_calls() -> None:
    chat = anthropic_to_chat(
        answer(
            {"type": "tool_use", "id": "toolu_9", "name": "f", "input": {"a": [1, 2]}},
            stop_reason="tool_use",
        ),
        model="m",
    )

    message = chat.choices[0].message
    assert message.content is None
    (call,) = message.tool_calls or []
    assert (call.id, call.function.name) == ("toolu_9", "f")
    assert json.loads(call.function.arguments or "") == {"a": [1, 2]}
    assert chat.choices[0].finish_reason == "tool_calls"


def test_json_tool_answer_becomes_json_content_with_finish_stop() -> None:
    chat = anthropic_to_chat(
        answer(
            {"type": "tool_use", "id": "t", "name": JSON_TOOL_NAME, "input": {"a": 1}},
            stop_reason="tool_use",
        ),
        model="m",
    )

    assert json.loads(chat.choices[0].message.content or "") == {"a": 1}
    assert chat.choices[0].message.tool_calls is None
    assert chat.choices[0].finish_reason == "stop"


def test_thinking_comes_back_as_reasoning_content() -> None:
    chat = anthropic_to_chat(
        answer(
            {"type": "thinking", "thinking": "Let me see", "signature": "s"},
            {"type": "text", "text": "4"},
        ),
        model="m",
    )

    assert chat.choices[0].message.content == "4"
    assert (chat.choices[0].message.model_extra or {})["reasoning_content"] == "Let me see"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "length"),
    ],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str, finish: str) -> None:
    chat = anthropic_to_chat(
        answer({"type": "text", "text": "x"}, stop_reason=stop_reason), model="m"
    )

    assert chat.choices[0].finish_reason == finish


def test_cache_tokens_count_as_prompt_tokens_and_cache_reads_as_cached() -> None:
    chat = anthropic_to_chat(
        answer(
            {"type": "text", "text": "x"}, cache_read_input_tokens=50, cache_creation_input_tokens=5
        ),
        model="m",
    )

    usage = chat.usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.total_tokens) == (65, 68)
    assert (usage.model_extra or {})["prompt_tokens_details"] == {"cached_tokens": 50}


@pytest.mark.parametrize("bad", [{"foo": 1}, {**answer(), "content": [{"text": "no type"}]}])
def test_answers_that_are_not_messages_raise_upstream_error(bad: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        anthropic_to_chat(bad, model="m")


# --- streamed response ------------------------------------------------------------------------

_START = {
    "type": "message_start",
    "message": {
        "id": "msg_s",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 25, "output_tokens": 1, "cache_read_input_tokens": 5},
    },
}


def feed_all(
    *events: dict[str, Any],
) -> tuple[AnthropicStreamTranslator, list[ChatCompletionChunk]]:
    translator = AnthropicStreamTranslator(model="alias")
    return translator, [chunk for event in events for chunk in translator.feed(event)]


def test_text_events_become_role_content_finish_and_usage_chunks() -> None:
    translator, chunks = feed_all(
        _START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 7},
        },
    )

    assert [c.wire()["choices"] for c in chunks] == [
        [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
        [{"index": 0, "delta": {"content": "Hi"}}],
        [{"index": 0, "delta": {}, "finish_reason": "length"}],
    ]
    assert all(c.id == "msg_s" and c.model == "alias" for c in chunks)
    assert not translator.finished

    (last,) = translator.feed({"type": "message_stop"})
    assert translator.finished
    assert last.choices == []
    assert last.wire()["usage"] == {
        "prompt_tokens": 30,
        "completion_tokens": 7,
        "total_tokens": 37,
        "prompt_tokens_details": {"cached_tokens": 5},
    }


def test_tool_use_events_become_indexed_tool_call_deltas() -> None:
    def tool(index: int, name: str) -> dict[str, Any]:
        return {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "tool_use", "id": f"toolu_{name}", "name": name, "input": {}},
        }

    def args(index: int, text: str) -> dict[str, Any]:
        return {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": "input_json_delta", "partial_json": text},
        }

    _, chunks = feed_all(
        _START,
        tool(0, "a"),
        args(0, ""),
        args(0, '{"x":'),
        args(0, " 1}"),
        tool(1, "b"),
        args(1, "{}"),
    )

    calls = [c.wire()["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:]]
    assert calls == [
        {
            "index": 0,
            "id": "toolu_a",
            "type": "function",
            "function": {"name": "a", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"x":'}},
        {"index": 0, "function": {"arguments": " 1}"}},
        {
            "index": 1,
            "id": "toolu_b",
            "type": "function",
            "function": {"name": "b", "arguments": ""},
        },
        {"index": 1, "function": {"arguments": "{}"}},
    ]


def test_json_tool_events_become_content_deltas_with_finish_stop() -> None:
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "tool_use", "id": "t", "name": JSON_TOOL_NAME, "input": {}},
    }
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "input_json_delta", "partial_json": '{"a": 1}'},
    }
    end = {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use"},
        "usage": {"output_tokens": 3},
    }
    _, chunks = feed_all(_START, start, delta, end)

    assert [c.wire()["choices"][0] for c in chunks[1:]] == [
        {"index": 0, "delta": {"content": '{"a": 1}'}},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ]


def test_thinking_deltas_become_reasoning_content() -> None:
    delta = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hmm"},
    }
    signature = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "signature_delta", "signature": "s"},
    }
    _, chunks = feed_all(_START, delta, signature)

    assert [c.wire()["choices"][0]["delta"] for c in chunks[1:]] == [{"reasoning_content": "hmm"}]


def test_unknown_event_types_are_ignored() -> None:
    _, chunks = feed_all({"type": "some_future_event", "data": 1})

    assert chunks == []


@pytest.mark.parametrize(
    "event",
    [
        {"type": "content_block_delta", "index": 0},
        {
            "type": "content_block_delta",
            "index": 5,
            "delta": {"type": "input_json_delta", "partial_json": "{"},
        },
    ],
)
def test_malformed_events_raise_upstream_error(event: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        feed_all(_START, event)
