"""The native Responses API call: chat requests (translated from `/v1/responses`) as its
body, its Response objects and typed events back as chat completions and chunks."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from gateway.errors import UnsupportedParameter, UpstreamError
from gateway.protocol.openai import ChatCompletionChunk, ChatCompletionRequest
from gateway.protocol.responses import FunctionCallItem, MessageItem, ResponsesRequest
from gateway.protocol.responses_convert import ResponsesChatRequest, responses_to_chat_request
from gateway.protocol.responses_upstream import chat_request_to_responses, response_to_chat
from gateway.protocol.responses_upstream_stream import ResponsesStreamTranslator
from gateway.providers.params import conform
from gateway.providers.presets import PRESETS

TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
}


def translated(**fields: Any) -> ResponsesChatRequest:
    history = fields.pop("history", None)
    request = ResponsesRequest.model_validate({"model": "gpt-x", **fields})
    return responses_to_chat_request(request, history)


# --- request ----------------------------------------------------------------------------------


def test_the_translated_request_is_marked_for_a_native_call() -> None:
    assert isinstance(translated(input="hi"), ResponsesChatRequest)
    # What a client posts to the chat route never is.
    plain = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert not isinstance(plain, ResponsesChatRequest)


def test_the_mark_survives_a_ray_handle_and_parameter_conforming() -> None:
    request = translated(input="hi", max_output_tokens=5, reasoning={"effort": "low"})
    assert isinstance(pickle.loads(pickle.dumps(request)), ResponsesChatRequest)
    upstream = request.model_copy(update={"model": "gpt-5-mini"})
    conformed = conform(upstream, PRESETS["openai"], provider="openai", drop=False).request
    assert isinstance(conformed, ResponsesChatRequest)
    assert conformed.max_completion_tokens == 5  # renamed for a reasoning model, still marked


def test_the_native_body_carries_the_whole_conversation_and_stores_nothing() -> None:
    history = [
        MessageItem(role="user", content="Look up 'gateway'"),
        FunctionCallItem(call_id="call_1", name="lookup", arguments='{"word": "gateway"}'),
    ]
    request = translated(
        instructions="Be brief.",
        history=history,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "a way in"}],
        tools=[TOOL],
        tool_choice={"type": "function", "name": "lookup"},
        max_output_tokens=64,
        temperature=0.2,
        reasoning={"effort": "low"},
        text={"format": {"type": "json_schema", "name": "w", "schema": {}}, "verbosity": "low"},
        store=True,
    )
    body = chat_request_to_responses(request, stream=False)
    assert body["store"] is False and body["stream"] is False
    assert body["input"] == [
        {"type": "message", "role": "system", "content": "Be brief."},
        {"type": "message", "role": "user", "content": "Look up 'gateway'"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "lookup",
            "arguments": '{"word": "gateway"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "a way in"},
    ]
    assert body["tools"] == [TOOL]
    assert body["tool_choice"] == {"type": "function", "name": "lookup"}
    assert body["max_output_tokens"] == 64 and body["temperature"] == 0.2
    assert body["reasoning"] == {"effort": "low"}
    assert body["text"] == {
        "format": {"type": "json_schema", "name": "w", "schema": {}},
        "verbosity": "low",
    }
    assert "previous_response_id" not in body and "metadata" not in body


def test_images_go_as_input_images() -> None:
    part = {"type": "input_image", "image_url": "https://example.org/a.png", "detail": "low"}
    request = translated(input=[{"role": "user", "content": [part]}])
    [item] = chat_request_to_responses(request, stream=True)["input"]
    assert item["content"] == [part]


def test_a_chat_field_the_responses_api_lacks_is_refused_by_name() -> None:
    request = translated(input="hi").model_copy(update={"n": 2})
    with pytest.raises(UnsupportedParameter) as caught:
        chat_request_to_responses(request, stream=False)
    assert caught.value.param == "n"


# --- whole answers ----------------------------------------------------------------------------


def upstream_response(**fields: Any) -> dict[str, Any]:
    return {
        "id": "resp_up1",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Paris", "annotations": []}],
            },
        ],
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 5},
            "total_tokens": 17,
        },
        **fields,
    }


def test_a_response_becomes_a_chat_completion_with_its_usage_details() -> None:
    chat = response_to_chat(upstream_response(), model="gpt-x")
    [choice] = chat.choices
    assert choice.message.content == "Paris" and choice.finish_reason == "stop"
    assert chat.model == "gpt-x"
    assert chat.usage is not None
    assert (chat.usage.prompt_tokens, chat.usage.completion_tokens) == (10, 7)
    extra = chat.usage.model_extra or {}
    assert extra["prompt_tokens_details"] == {"cached_tokens": 4}
    assert extra["completion_tokens_details"] == {"reasoning_tokens": 5}


def test_function_calls_become_tool_calls() -> None:
    call = {
        "type": "function_call",
        "id": "fc_1",
        "call_id": "call_9",
        "name": "lookup",
        "arguments": '{"word": "x"}',
        "status": "completed",
    }
    chat = response_to_chat(upstream_response(output=[call]), model="gpt-x")
    [choice] = chat.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [tool_call] = choice.message.tool_calls or []
    assert tool_call.id == "call_9" and tool_call.function.name == "lookup"
    assert tool_call.function.arguments == '{"word": "x"}'


@pytest.mark.parametrize(
    ("reason", "finish"), [("max_output_tokens", "length"), ("content_filter", "content_filter")]
)
def test_an_incomplete_response_finishes_as_chat_says_it(reason: str, finish: str) -> None:
    data = upstream_response(status="incomplete", incomplete_details={"reason": reason})
    assert response_to_chat(data, model="m").choices[0].finish_reason == finish


@pytest.mark.parametrize(
    "data",
    [
        {"object": "chat.completion"},
        {"object": "response", "status": "failed", "error": {"code": "server_error"}},
        {"object": "response", "status": "in_progress", "output": []},
    ],
)
def test_a_failed_or_foreign_answer_is_an_upstream_error(data: dict[str, Any]) -> None:
    with pytest.raises(UpstreamError):
        response_to_chat(data, model="m")


# --- streams ----------------------------------------------------------------------------------


def feed_all(events: list[dict[str, Any]]) -> tuple[list[ChatCompletionChunk], bool]:
    translator = ResponsesStreamTranslator(model="gpt-x")
    chunks = [chunk for event in events for chunk in translator.feed(event)]
    return chunks, translator.finished


CREATED = {"type": "response.created", "response": {"id": "resp_s", "created_at": 1}}


def test_text_events_become_content_chunks_then_finish_and_usage() -> None:
    done = upstream_response(output=[])
    chunks, finished = feed_all(
        [
            CREATED,
            {"type": "response.in_progress", "response": {}},
            {"type": "response.output_text.delta", "delta": "Par"},
            {"type": "response.output_text.delta", "delta": "is"},
            {"type": "response.output_text.done", "text": "Paris"},
            {"type": "response.completed", "response": done},
        ]
    )
    assert finished
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Paris"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 17


def test_function_call_events_become_tool_call_deltas() -> None:
    item = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup"}
    chunks, finished = feed_all(
        [
            CREATED,
            {"type": "response.output_item.added", "item": {**item, "arguments": ""}},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '{"w'},
            {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": '":1}'},
            {"type": "response.output_item.done", "item": {**item, "arguments": '{"w":1}'}},
            {"type": "response.completed", "response": {"status": "completed"}},
        ]
    )
    assert finished
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "call_1" and calls[0].function.name == "lookup"
    assert "".join(call.function.arguments or "" for call in calls) == '{"w":1}'
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_arguments_sent_only_whole_in_the_done_item_still_arrive() -> None:
    item = {"type": "function_call", "id": "fc_1", "call_id": "c", "name": "f"}
    chunks, _ = feed_all(
        [
            CREATED,
            {"type": "response.output_item.added", "item": {**item, "arguments": ""}},
            {"type": "response.output_item.done", "item": {**item, "arguments": "{}"}},
        ]
    )
    calls = [call for c in chunks for call in c.choices[0].delta.tool_calls or []]
    assert "".join(call.function.arguments or "" for call in calls) == "{}"


def test_a_stream_that_stops_before_completed_is_not_finished() -> None:
    _, finished = feed_all([CREATED, {"type": "response.output_text.delta", "delta": "Pa"}])
    assert not finished


@pytest.mark.parametrize(
    "breaking",
    [
        {"type": "error", "code": "server_error", "message": "boom"},
        {"type": "response.failed", "response": {"error": {"code": "x", "message": "boom"}}},
        {"type": "response.function_call_arguments.delta", "item_id": "fc_never", "delta": "{"},
    ],
)
def test_a_broken_stream_raises(breaking: dict[str, Any]) -> None:
    translator = ResponsesStreamTranslator(model="m")
    translator.feed(CREATED)
    with pytest.raises(UpstreamError):
        translator.feed(breaking)
    assert not translator.finished


def test_events_after_the_end_are_an_error() -> None:
    translator = ResponsesStreamTranslator(model="m")
    translator.feed({"type": "response.completed", "response": {"status": "completed"}})
    with pytest.raises(UpstreamError):
        translator.feed({"type": "response.output_text.delta", "delta": "late"})
