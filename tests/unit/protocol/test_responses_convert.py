"""Responses requests onto chat requests and chat answers back into response objects; the
official SDK's models parse what the gateway produces."""

from __future__ import annotations

from typing import Any

import openai.types.responses as sdk
import pytest

from gateway.errors import InvalidRequest, UnsupportedParameter
from gateway.protocol.openai import ChatCompletion
from gateway.protocol.responses import (
    FunctionCallItem,
    MessageItem,
    OutputMessage,
    OutputText,
    ResponsesRequest,
)
from gateway.protocol.responses_convert import (
    chat_to_response,
    response_shell,
    responses_to_chat_request,
)

TOOL = {
    "type": "function",
    "name": "lookup",
    "description": "Look a word up",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
}


def _chat(**body: Any) -> dict[str, Any]:
    request = ResponsesRequest.model_validate({"model": "sim-small", **body})
    return responses_to_chat_request(request).model_dump(exclude_none=True)


def test_a_string_input_with_instructions_is_a_system_and_a_user_message() -> None:
    chat = _chat(input="Hello", instructions="Be brief.", max_output_tokens=50, temperature=0.2)
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
    ]
    assert chat["max_tokens"] == 50 and chat["temperature"] == 0.2
    assert "stream_options" not in chat


def test_items_become_chat_turns_calls_on_the_assistant_results_as_tool_messages() -> None:
    chat = _chat(
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Define gateway"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Let me look."}],
            },
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "lookup",
                "arguments": '{"word":"gateway"}',
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "a way through"},
        ],
        tools=[TOOL],
        tool_choice={"type": "function", "name": "lookup"},
        metadata={"team": "a"},
        store=True,
        user="u1",
    )
    messages = chat["messages"]
    assert messages[0] == {"role": "user", "content": [{"type": "text", "text": "Define gateway"}]}
    assert messages[1]["role"] == "assistant" and messages[1]["content"] == "Let me look."
    assert messages[1]["tool_calls"][0]["id"] == "call_1"
    assert messages[1]["tool_calls"][0]["function"]["arguments"] == '{"word":"gateway"}'
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "a way through"}
    assert chat["tools"][0]["function"]["name"] == "lookup"
    assert chat["tools"][0]["function"]["parameters"] == TOOL["parameters"]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "lookup"}}
    assert chat["user"] == "u1"
    assert "metadata" not in chat and "store" not in chat  # the gateway's, not the upstream's


def test_history_comes_before_the_new_input_and_instructions_first() -> None:
    request = ResponsesRequest(model="m", input="second", instructions="New rules")
    history = [
        MessageItem(role="user", content="first"),
        OutputMessage(content=[OutputText(text="answer")]),
    ]
    messages = responses_to_chat_request(request, history).messages
    assert [(m.role, m.text()) for m in messages] == [
        ("system", "New rules"),
        ("user", "first"),
        ("assistant", "answer"),
        ("user", "second"),
    ]


def test_a_stream_asks_the_upstream_for_usage() -> None:
    chat = _chat(input="hi", stream=True)
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}


def test_text_format_json_schema_becomes_a_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    chat = _chat(
        input="hi", text={"format": {"type": "json_schema", "name": "s", "schema": schema}}
    )
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "s", "schema": schema},
    }


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [TOOL, {"type": "file_search", "vector_store_ids": ["v"]}]}, "tools[1].type"),
        ({"background": True}, "background"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"truncation": "auto"}, "truncation"),
        ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input",
        ),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_the_parameter(
    body: dict[str, Any], param: str
) -> None:
    request = ResponsesRequest.model_validate({"model": "m", "input": "hi", **body})
    with pytest.raises(UnsupportedParameter) as refused:
        responses_to_chat_request(request)
    assert refused.value.param == param
    assert refused.value.status == 400


def test_a_malformed_message_item_is_a_400() -> None:
    request = ResponsesRequest.model_validate(
        {"model": "m", "input": [{"type": "message", "role": "user"}]}
    )
    with pytest.raises(InvalidRequest) as refused:
        responses_to_chat_request(request)
    assert refused.value.param == "input[0]"


def _completion(message: dict[str, Any], finish: str = "stop") -> ChatCompletion:
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "model": "upstream-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 5,
                "total_tokens": 15,
                "prompt_tokens_details": {"cached_tokens": 4},
            },
        }
    )


def _shell(**body: Any) -> Any:
    request = ResponsesRequest.model_validate({"model": "alias", "input": "hi", **body})
    return response_shell(request, response_id="resp_1", store=True)


def test_an_answer_is_a_completed_response_the_sdk_parses() -> None:
    shell = _shell(instructions="Be brief.", metadata={"k": "v"})
    response = chat_to_response(_completion({"role": "assistant", "content": "Paris"}), shell)
    parsed = sdk.Response.model_validate(response.wire())
    assert parsed.id == "resp_1" and parsed.status == "completed"
    assert parsed.model == "alias"  # the alias the client asked for
    assert parsed.output_text == "Paris"
    assert parsed.instructions == "Be brief." and parsed.metadata == {"k": "v"}
    assert parsed.usage is not None
    assert (parsed.usage.input_tokens, parsed.usage.output_tokens) == (10, 5)
    assert parsed.usage.total_tokens == 15
    assert parsed.usage.input_tokens_details.cached_tokens == 4


def test_tool_calls_are_function_call_items_with_their_call_ids() -> None:
    message = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"word":"x"}'},
            },
            {
                "id": "call_b",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"word":"y"}'},
            },
        ],
    }
    response = chat_to_response(_completion(message, "tool_calls"), _shell(tools=[TOOL]))
    parsed = sdk.Response.model_validate(response.wire())
    calls = [item for item in parsed.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_a", "lookup", '{"word":"x"}'),
        ("call_b", "lookup", '{"word":"y"}'),
    ]
    assert all(item.type == "function_call" for item in parsed.output)
    assert isinstance(response.output[0], FunctionCallItem)
    assert response.output[0].id.startswith("fc_")


def test_a_cut_answer_is_incomplete_with_its_reason() -> None:
    response = chat_to_response(
        _completion({"role": "assistant", "content": "Par"}, "length"), _shell()
    )
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
