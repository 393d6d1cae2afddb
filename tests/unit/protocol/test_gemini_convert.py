"""Canonical chat and embeddings onto the Gemini API and back: the Gemini adapter's translation."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from gateway.errors import InvalidRequest, UnsupportedParameter, UpstreamError
from gateway.protocol.gemini_embeddings import embedding_request_to_gemini, gemini_to_embeddings
from gateway.protocol.gemini_request import chat_request_to_gemini
from gateway.protocol.gemini_response import GeminiStreamTranslator, gemini_to_chat
from gateway.protocol.gemini_schema import to_gemini_schema
from gateway.protocol.openai import ChatCompletionRequest, EmbeddingRequest

TOOL = {
    "type": "function",
    "function": {
        "name": "f",
        "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
    },
}


def body(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    messages = messages or ({"role": "user", "content": "hi"},)
    req = ChatCompletionRequest.model_validate({"model": "gemini", "messages": messages, **fields})
    return chat_request_to_gemini(req)


def candidate(
    *parts: dict[str, Any], finish: str | None = "STOP", index: int = 0
) -> dict[str, Any]:
    data: dict[str, Any] = {"content": {"role": "model", "parts": list(parts)}, "index": index}
    if finish:
        data["finishReason"] = finish
    return data


USAGE = {"promptTokenCount": 8, "candidatesTokenCount": 3, "totalTokenCount": 11}


# --- request ----------------------------------------------------------------------------------


def test_roles_map_and_system_becomes_system_instruction() -> None:
    result = body(
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "developer", "content": "be kind"},
        {"role": "user", "content": "again"},
    )

    assert result == {
        "systemInstruction": {"parts": [{"text": "be brief"}, {"text": "be kind"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hello"}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ],
    }


def test_generation_config_collects_the_sampling_fields() -> None:
    result = body(
        max_completion_tokens=99,
        temperature=1.7,
        top_p=0.5,
        top_k=4,
        stop=["A", "B"],
        n=3,
        seed=5,
        presence_penalty=0.1,
        frequency_penalty=0.2,
    )

    assert result["generationConfig"] == {
        "maxOutputTokens": 99,
        "temperature": 1.7,
        "topP": 0.5,
        "topK": 4,
        "stopSequences": ["A", "B"],
        "candidateCount": 3,
        "seed": 5,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
    }
    assert "top_k" not in result


def test_unknown_fields_pass_on_at_the_top_level() -> None:
    settings = [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}]

    assert body(safetySettings=settings)["safetySettings"] == settings


def test_tool_calls_and_results_become_function_call_and_response_parts() -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": '{"q": "x"}'},
    }
    result = body(
        {"role": "user", "content": "look up x"},
        {"role": "assistant", "content": "Looking.", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "plain text"},
        {"role": "user", "content": "and?"},
    )

    assert result["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"text": "Looking."},
                {"functionCall": {"name": "lookup", "args": {"q": "x"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "lookup", "response": {"result": "plain text"}}},
                {"text": "and?"},
            ],
        },
    ]


def test_tool_result_that_is_a_json_object_is_the_response_itself() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    result = body(
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c", "content": '{"temp": 20}'},
    )

    assert result["contents"][2]["parts"] == [
        {"functionResponse": {"name": "f", "response": {"temp": 20}}}
    ]


def test_tool_result_without_a_matching_call_is_invalid() -> None:
    with pytest.raises(InvalidRequest):
        body(
            {"role": "user", "content": "go"},
            {"role": "tool", "tool_call_id": "nope", "content": "x"},
        )


def test_thought_signature_rides_in_the_tool_call_id_and_comes_back() -> None:
    answer = {
        "candidates": [
            candidate({"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"})
        ]
    }
    (call,) = gemini_to_chat(answer, model="g").choices[0].message.tool_calls or []

    result = body(
        {"role": "user", "content": "go"},
        {"role": "assistant", "tool_calls": [call.model_dump(exclude_none=True)]},
        {"role": "tool", "tool_call_id": call.id, "content": "done"},
    )

    assert result["contents"][1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "c2ln"}
    ]
    assert result["contents"][2]["parts"][0]["functionResponse"]["name"] == "f"


@pytest.mark.parametrize(
    ("part", "expected"),
    [
        (
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,QUJD"}},
            {"inlineData": {"mimeType": "image/png", "data": "QUJD"}},
        ),
        (
            {"type": "image_url", "image_url": {"url": "https://x.test/cat.jpg?size=2"}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/cat.jpg?size=2"}},
        ),
        (
            {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
            {"inlineData": {"mimeType": "audio/wav", "data": "UklG"}},
        ),
    ],
)
def test_media_parts_become_inline_or_file_data(
    part: dict[str, Any], expected: dict[str, Any]
) -> None:
    result = body({"role": "user", "content": [{"type": "text", "text": "see"}, part]})

    assert result["contents"][0]["parts"] == [{"text": "see"}, expected]


def test_media_url_without_a_known_type_is_invalid() -> None:
    with pytest.raises(InvalidRequest):
        body(
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "https://x.test/img"}}],
            }
        )


def test_tools_become_function_declarations() -> None:
    no_args = {
        "type": "function",
        "function": {
            "name": "now",
            "description": "time",
            "parameters": {"type": "object", "properties": {}},
        },
    }
    result = body(tools=[TOOL, no_args])

    assert result["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "f",
                    "parameters": {"type": "object", "properties": {"a": {"type": "string"}}},
                },
                {"name": "now", "description": "time"},  # Gemini rejects an empty object schema
            ]
        }
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "f"}},
            {"mode": "ANY", "allowedFunctionNames": ["f"]},
        ),
    ],
)
def test_tool_choice_becomes_function_calling_config(choice: Any, expected: dict[str, Any]) -> None:
    assert body(tools=[TOOL], tool_choice=choice)["toolConfig"] == {
        "functionCallingConfig": expected
    }


def test_json_object_response_format_sets_the_json_mime_type() -> None:
    config = body(response_format={"type": "json_object"})["generationConfig"]

    assert config == {"responseMimeType": "application/json"}


def test_json_schema_response_format_sets_a_converted_response_schema() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "additionalProperties": False,
    }
    config = body(
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    )["generationConfig"]

    assert config == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "object", "properties": {"a": {"type": "integer"}}},
    }


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 1}, "top_logprobs"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ],
)
def test_parameters_gemini_cannot_honour_are_refused(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        body(**fields)

    assert refused.value.param == param


# --- schema -----------------------------------------------------------------------------------


def test_schema_refs_are_inlined_and_json_schema_only_keywords_dropped() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "Point": {
                "type": "object",
                "properties": {"x": {"type": "number", "exclusiveMinimum": 0}},
            }
        },
        "properties": {
            "p": {"$ref": "#/$defs/Point", "description": "where"},
            "tags": {
                "type": "array",
                "items": {"type": "string", "format": "uri"},
                "uniqueItems": True,
            },
        },
        "required": ["p"],
        "additionalProperties": False,
    }

    assert to_gemini_schema(schema, param="tools") == {
        "type": "object",
        "properties": {
            "p": {
                "type": "object",
                "properties": {"x": {"type": "number"}},
                "description": "where",
            },
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["p"],
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, {"type": "integer", "nullable": True}),
        (
            {"oneOf": [{"type": "integer"}, {"type": "string"}]},
            {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        ),
        ({"const": "x"}, {"enum": ["x"]}),
        ({"type": "integer", "enum": [1, 2]}, {"type": "integer"}),
        ({"allOf": [{"type": "string", "minLength": 2}]}, {"type": "string", "minLength": 2}),
        ({"type": ["string", "integer"]}, {"anyOf": [{"type": "string"}, {"type": "integer"}]}),
    ],
)
def test_schema_constructs_map_to_gemini_equivalents(
    schema: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert to_gemini_schema(schema, param="response_format") == expected


@pytest.mark.parametrize(
    "schema",
    [
        {
            "$defs": {"N": {"type": "object", "properties": {"next": {"$ref": "#/$defs/N"}}}},
            "$ref": "#/$defs/N",
        },
        {"allOf": [{"type": "string"}, {"minLength": 1}]},
        {"$ref": "#/$defs/Missing"},
    ],
)
def test_schemas_gemini_cannot_express_are_refused(schema: dict[str, Any]) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        to_gemini_schema(schema, param="tools")

    assert refused.value.param == "tools"


# --- whole response ---------------------------------------------------------------------------


def test_candidates_become_choices_with_usage() -> None:
    answer = {
        "candidates": [
            candidate({"text": "Hel"}, {"text": "lo"}),
            candidate({"text": "Hey"}, index=1),
        ],
        "usageMetadata": USAGE,
        "responseId": "r1",
    }
    chat = gemini_to_chat(answer, model="alias")

    assert chat.wire()["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"},
        {"index": 1, "message": {"role": "assistant", "content": "Hey"}, "finish_reason": "stop"},
    ]
    assert chat.id == "chatcmpl-r1" and chat.model == "alias"
    assert chat.wire()["usage"] == {"prompt_tokens": 8, "completion_tokens": 3, "total_tokens": 11}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("OTHER", "stop"),
    ],
)
def test_finish_reasons_map(reason: str, finish: str) -> None:
    chat = gemini_to_chat({"candidates": [candidate({"text": "x"}, finish=reason)]}, model="m")

    assert chat.choices[0].finish_reason == finish


def test_function_calls_become_tool_calls_with_generated_ids() -> None:
    answer = {
        "candidates": [
            candidate(
                {"functionCall": {"name": "f", "args": {"a": 1}}},
                {"functionCall": {"name": "g", "args": {}}},
            )
        ]
    }
    chat = gemini_to_chat(answer, model="m")

    calls = chat.choices[0].message.tool_calls or []
    assert [(c.function.name, json.loads(c.function.arguments or "")) for c in calls] == [
        ("f", {"a": 1}),
        ("g", {}),
    ]
    assert len({c.id for c in calls}) == 2 and all((c.id or "").startswith("call_") for c in calls)
    assert chat.choices[0].message.content is None
    assert chat.choices[0].finish_reason == "tool_calls"


def test_thoughts_become_reasoning_content_and_count_as_completion_tokens() -> None:
    answer = {
        "candidates": [candidate({"text": "pondering", "thought": True}, {"text": "42"})],
        "usageMetadata": {
            **USAGE,
            "thoughtsTokenCount": 5,
            "totalTokenCount": 16,
            "cachedContentTokenCount": 2,
        },
    }
    chat = gemini_to_chat(answer, model="m")

    message = chat.choices[0].message
    assert message.content == "42"
    assert (message.model_extra or {})["reasoning_content"] == "pondering"
    assert chat.wire()["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 8,
        "total_tokens": 16,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }


def test_blocked_prompt_becomes_an_empty_content_filter_choice() -> None:
    chat = gemini_to_chat(
        {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": USAGE}, model="m"
    )

    assert chat.wire()["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "finish_reason": "content_filter",
        }
    ]


@pytest.mark.parametrize("bad", [{}, {"candidates": "nope"}, [1, 2]])
def test_answers_that_are_not_gemini_raise_upstream_error(bad: Any) -> None:
    with pytest.raises(UpstreamError):
        gemini_to_chat(bad, model="m")


# --- streamed response ------------------------------------------------------------------------


def test_stream_events_become_chunks_and_finish_only_with_a_finish_reason() -> None:
    translator = GeminiStreamTranslator(model="alias")

    first = translator.feed(
        {"candidates": [candidate({"text": "Hel"}, finish=None)], "responseId": "r9"}
    )
    assert not translator.finished
    second = translator.feed({"candidates": [candidate({"text": "lo"})], "usageMetadata": USAGE})
    assert translator.finished
    usage = translator.usage_chunk()

    assert [c.wire()["choices"][0] for c in [*first, *second]] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}},
        {"index": 0, "delta": {"content": "Hel"}},
        {"index": 0, "delta": {"content": "lo"}},
        {"index": 0, "delta": {}, "finish_reason": "stop"},
    ]
    assert usage.choices == [] and usage.wire()["usage"] == {
        "prompt_tokens": 8,
        "completion_tokens": 3,
        "total_tokens": 11,
    }
    assert {c.id for c in [*first, *second, usage]} == {"chatcmpl-r9"}


def test_streamed_function_calls_get_increasing_indices_and_finish_tool_calls() -> None:
    translator = GeminiStreamTranslator(model="m")
    chunks = translator.feed(
        {
            "candidates": [
                candidate(
                    {"functionCall": {"name": "a", "args": {}}},
                    {"functionCall": {"name": "b", "args": {"x": 1}}},
                )
            ]
        }
    )

    calls = [call for c in chunks for ch in c.choices for call in ch.delta.tool_calls or []]
    assert [(c.index, c.function.name, c.function.arguments) for c in calls] == [
        (0, "a", "{}"),
        (1, "b", '{"x": 1}'),
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_stream_is_finished_only_when_every_candidate_finished() -> None:
    translator = GeminiStreamTranslator(model="m")
    translator.feed(
        {"candidates": [candidate({"text": "a"}), candidate({"text": "b"}, finish=None, index=1)]}
    )
    assert not translator.finished

    translator.feed({"candidates": [candidate({"text": "c"}, index=1)]})
    assert translator.finished


def test_streamed_blocked_prompt_finishes_with_content_filter() -> None:
    translator = GeminiStreamTranslator(model="m")
    chunks = translator.feed({"promptFeedback": {"blockReason": "OTHER"}})

    assert translator.finished
    assert chunks[-1].choices[0].finish_reason == "content_filter"


# --- embeddings -------------------------------------------------------------------------------


def test_embedding_request_has_one_entry_per_input() -> None:
    result = embedding_request_to_gemini(
        EmbeddingRequest(model="text-embedding-004", input="a", dimensions=3)
    )

    assert result == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": "a"}]},
                "outputDimensionality": 3,
            }
        ]
    }


@pytest.mark.parametrize("tokens", [[1, 2], [[1], [2]]])
def test_token_id_inputs_are_refused(tokens: Any) -> None:
    with pytest.raises(UnsupportedParameter):
        embedding_request_to_gemini(EmbeddingRequest(model="e", input=tokens))


def test_embeddings_answer_becomes_an_openai_list_and_base64_is_float32_le() -> None:
    answer = {"embeddings": [{"values": [0.5, -1.25]}, {"values": [3.0, 0.0]}]}
    request = EmbeddingRequest(model="e", input=["a", "b"], encoding_format="base64")

    result = gemini_to_embeddings(answer, request=request)

    assert [d.index for d in result.data] == [0, 1]
    assert base64.b64decode(str(result.data[0].embedding)) == struct.pack("<2f", 0.5, -1.25)
    floats = gemini_to_embeddings(
        answer, request=request.model_copy(update={"encoding_format": None})
    )
    assert floats.data[1].embedding == [3.0, 0.0]
    assert floats.model == "e" and floats.usage.prompt_tokens == 0


def test_embeddings_answer_with_the_wrong_count_raises() -> None:
    with pytest.raises(UpstreamError):
        gemini_to_embeddings(
            {"embeddings": [{"values": [1.0]}]},
            request=EmbeddingRequest(model="e", input=["a", "b"]),
        )
