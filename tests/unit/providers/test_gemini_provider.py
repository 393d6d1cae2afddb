"""The Gemini adapter against the upstream simulator's `/v1beta/models/{model}:{action}`."""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from gateway.config import ProviderConfig
from gateway.errors import (
    InvalidRequest,
    RateLimited,
    UnsupportedParameter,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.protocol.openai import ChatCompletionRequest, EmbeddingRequest
from gateway.providers.base import Provider
from gateway.providers.gemini import GeminiProvider
from gateway.providers.registry import build_provider
from gateway.simulator import SimulatorSettings, create_app
from tests.support.simulator import (
    add_faults,
    collect,
    provider_for,
    received,
    serve,
    streamed_text,
)

MODEL = "gemini-2.0-flash"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def chat(*messages: dict[str, Any], **fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": MODEL, "messages": list(messages), **fields}
    )


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.fixture
def sim() -> Starlette:
    return create_app(SimulatorSettings(answer_words=6, embedding_dim=8))


@pytest_asyncio.fixture
async def provider(sim: Starlette) -> AsyncIterator[Provider]:
    adapter = provider_for(sim, "gemini")
    yield adapter
    await adapter.aclose()


def test_registry_builds_the_gemini_adapter(sim: Starlette) -> None:
    assert isinstance(provider_for(sim, "gemini"), GeminiProvider)


# --- plain and streamed answers ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_returns_the_upstream_answer_with_usage(provider: Provider) -> None:
    answer = await provider.chat(chat({"role": "system", "content": "be brief"}, user("hi there")))

    choice = answer.choices[0]
    assert isinstance(choice.message.content, str)
    assert choice.message.content.startswith(f"Simulated answer from {MODEL}: hi there")
    assert choice.finish_reason == "stop"
    assert answer.model == MODEL
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 4
    assert answer.usage.completion_tokens == len(choice.message.content.split())
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


@pytest.mark.asyncio
async def test_n_becomes_candidate_count_and_each_candidate_a_choice(provider: Provider) -> None:
    answer = await provider.chat(chat(user("two please"), n=2))

    assert [c.index for c in answer.choices] == [0, 1]
    assert (answer.choices[1].message.content or "").endswith("(choice 1)")
    assert all(c.finish_reason == "stop" for c in answer.choices)


@pytest.mark.asyncio
async def test_stream_relays_the_whole_answer_then_finish_then_usage(provider: Provider) -> None:
    whole = await provider.chat(chat(user("stream me please")))
    chunks = await collect(provider.chat_stream(chat(user("stream me please"), stream=True)))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert streamed_text(chunks) == whole.choices[0].message.content
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and whole.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens


@pytest.mark.asyncio
async def test_max_tokens_cut_maps_to_finish_reason_length(provider: Provider) -> None:
    answer = await provider.chat(chat(user("one two three"), max_tokens=3))

    assert answer.choices[0].finish_reason == "length"


# --- what the upstream receives ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_upstream_receives_the_translated_request(sim: Starlette, provider: Provider) -> None:
    await provider.chat(
        chat(
            {"role": "system", "content": "be brief"},
            user("hi"),
            {"role": "assistant", "content": "hello"},
            user("again"),
            max_tokens=40,
            temperature=1.5,
            top_p=0.9,
            stop="END",
            seed=3,
        )
    )

    (request,) = await received(sim)
    assert request["path"] == f"/v1beta/models/{MODEL}:generateContent"
    assert request["headers"]["x-goog-api-key"] == "<redacted>"
    assert "authorization" not in request["headers"]
    assert request["json"] == {
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hello"}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 40,
            "temperature": 1.5,
            "topP": 0.9,
            "seed": 3,
            "stopSequences": ["END"],
        },
    }


@pytest.mark.asyncio
async def test_tool_results_reach_upstream_as_function_responses_named_after_their_calls(
    sim: Starlette, provider: Provider
) -> None:
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    answer = await provider.chat(
        chat(
            user("weather and time?"),
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": '{"time": "noon"}'},
            tools=[WEATHER_TOOL],
        )
    )

    (request,) = await received(sim)
    assert request["json"]["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "get_time", "response": {"time": "noon"}}},
            ],
        },
    ]
    assert request["json"]["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "object",
                        "properties": {"city": {"type": "string"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert "the tool returned" in (answer.choices[0].message.content or "")


@pytest.mark.asyncio
async def test_forced_tool_choice_reaches_upstream_as_allowed_function_names(
    sim: Starlette, provider: Provider
) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    answer = await provider.chat(chat(user("weather?"), tools=[WEATHER_TOOL], tool_choice=choice))

    (request,) = await received(sim)
    assert request["json"]["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }
    assert answer.choices[0].finish_reason == "tool_calls"


# --- tool calls -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_function_call_comes_back_as_openai_tool_calls(provider: Provider) -> None:
    answer = await provider.chat(chat(user("weather?"), tools=[WEATHER_TOOL]))

    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls or []
    assert call.id and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"city": "example"}


@pytest.mark.asyncio
async def test_streamed_function_call_comes_whole_with_index_id_and_name(
    provider: Provider,
) -> None:
    chunks = await collect(
        provider.chat_stream(chat(user("weather?"), tools=[WEATHER_TOOL], stream=True))
    )

    (call,) = [call for c in chunks for ch in c.choices for call in ch.delta.tool_calls or []]
    assert call.index == 0 and call.id and call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"city": "example"}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None


@pytest.mark.asyncio
async def test_json_schema_response_format_gets_json_content(
    sim: Starlette, provider: Provider
) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": ["string", "null"]}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}

    answer = await provider.chat(chat(user("json please"), response_format=response_format))

    assert json.loads(answer.choices[0].message.content or "") == {"answer": "example"}
    config = (await received(sim))[0]["json"]["generationConfig"]
    assert config["responseMimeType"] == "application/json"
    assert config["responseSchema"] == {
        "type": "object",
        "properties": {"answer": {"type": "string", "nullable": True}},
    }


# --- embeddings -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_embeddings_use_batch_embed_contents(sim: Starlette, provider: Provider) -> None:
    result = await provider.embeddings(
        EmbeddingRequest(model="text-embedding-004", input=["a cat", "a dog"], dimensions=4)
    )

    assert [item.index for item in result.data] == [0, 1]
    vectors = [item.embedding for item in result.data]
    assert all(isinstance(v, list) and len(v) == 4 for v in vectors)
    assert vectors[0] != vectors[1]
    assert math.isclose(sum(x * x for x in vectors[0]), 1.0, rel_tol=1e-6)  # type: ignore[union-attr]
    assert result.model == "text-embedding-004"
    (request,) = await received(sim)
    assert request["path"] == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert request["json"] == {
        "requests": [
            {
                "model": "models/text-embedding-004",
                "content": {"parts": [{"text": text}]},
                "outputDimensionality": 4,
            }
            for text in ("a cat", "a dog")
        ]
    }


@pytest.mark.asyncio
async def test_base64_embeddings_are_little_endian_float32(provider: Provider) -> None:
    floats = await provider.embeddings(EmbeddingRequest(model="e", input="a cat"))
    encoded = await provider.embeddings(
        EmbeddingRequest(model="e", input="a cat", encoding_format="base64")
    )

    vector = floats.data[0].embedding
    raw = base64.b64decode(str(encoded.data[0].embedding))
    assert isinstance(vector, list) and len(raw) == 4 * len(vector) == 4 * 8
    decoded = struct.unpack(f"<{len(vector)}f", raw)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(decoded, vector, strict=True))


@pytest.mark.asyncio
async def test_token_id_embedding_input_is_refused_before_sending(
    sim: Starlette, provider: Provider
) -> None:
    with pytest.raises(UnsupportedParameter) as refused:
        await provider.embeddings(EmbeddingRequest(model="e", input=[1, 2, 3]))

    assert refused.value.param == "input"
    assert await received(sim) == []


# --- refused before sending -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"logit_bias": {"1": 1.0}}, "logit_bias"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
    ],
)
async def test_unsupported_parameter_is_refused_before_any_request(
    sim: Starlette, provider: Provider, fields: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as plain:
        await provider.chat(chat(user("hi"), **fields))
    with pytest.raises(UnsupportedParameter) as streamed:
        await collect(provider.chat_stream(chat(user("hi"), stream=True, **fields)))

    assert plain.value.param == streamed.value.param == param
    assert await received(sim) == []


@pytest.mark.asyncio
async def test_tool_result_without_its_call_is_refused_before_sending(
    sim: Starlette, provider: Provider
) -> None:
    orphan = {"role": "tool", "tool_call_id": "call_x", "content": "42"}

    with pytest.raises(InvalidRequest, match="call_x"):
        await provider.chat(chat(user("hi"), orphan))

    assert await received(sim) == []


# --- upstream failures ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_429_becomes_rate_limited_with_retry_after(
    sim: Starlette, provider: Provider
) -> None:
    await add_faults(sim, {"kind": "status", "status": 429, "retry_after": 2, "count": 2})

    with pytest.raises(RateLimited) as plain:
        await provider.chat(chat(user("hi")))
    with pytest.raises(RateLimited) as streamed:
        await collect(provider.chat_stream(chat(user("hi"), stream=True)))

    assert plain.value.headers == streamed.value.headers == {"retry-after": "2"}


@pytest.mark.asyncio
async def test_503_becomes_upstream_unavailable(sim: Starlette, provider: Provider) -> None:
    await add_faults(sim, {"kind": "status", "status": 503, "count": 2})

    with pytest.raises(UpstreamUnavailable):
        await provider.chat(chat(user("hi")))
    with pytest.raises(UpstreamUnavailable):
        await collect(provider.chat_stream(chat(user("hi"), stream=True)))


@pytest.mark.asyncio
async def test_malformed_stream_chunk_raises_upstream_error(
    sim: Starlette, provider: Provider
) -> None:
    await add_faults(sim, {"kind": "malformed", "after_chunks": 2})
    chunks = []

    with pytest.raises(UpstreamError, match="malformed"):
        async for chunk in provider.chat_stream(chat(user("hi"), stream=True)):
            chunks.append(chunk)

    assert streamed_text(chunks)
    assert all(c.usage is None for c in chunks)


@pytest.mark.asyncio
async def test_cut_stream_raises_upstream_error() -> None:
    app = create_app(SimulatorSettings(answer_words=6))
    with serve(app) as url:
        await add_faults(url, {"kind": "cut", "after_chunks": 2})
        adapter = build_provider("gemini", ProviderConfig(kind="gemini", base_url=url))
        chunks = []
        with pytest.raises(UpstreamError, match="broke"):
            async for chunk in adapter.chat_stream(chat(user("hi"), stream=True)):
                chunks.append(chunk)
        await adapter.aclose()

    assert streamed_text(chunks)
    assert all(c.usage is None for c in chunks)


# --- stream endings the simulator cannot produce ----------------------------------------------


def _stub(*events: dict[str, Any]) -> Provider:
    body = b"".join(f"data: {json.dumps(e)}\r\n\r\n".encode() for e in events)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["alt"] == "sse"
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    return build_provider(
        "gemini",
        ProviderConfig(kind="gemini", base_url="http://stub"),
        transport=httpx.MockTransport(handler),
    )


_TEXT = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]}, "index": 0}]}


@pytest.mark.asyncio
async def test_stream_ending_without_finish_reason_raises_upstream_error() -> None:
    adapter = _stub(_TEXT, _TEXT)
    chunks = []

    with pytest.raises(UpstreamError, match="finishReason"):
        async for chunk in adapter.chat_stream(chat(user("hi"), stream=True)):
            chunks.append(chunk)

    assert streamed_text(chunks) == "HiHi"


@pytest.mark.asyncio
async def test_error_object_mid_stream_is_mapped_like_its_status() -> None:
    failure = {"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}}
    adapter = _stub(_TEXT, failure)

    with pytest.raises(UpstreamUnavailable, match="overloaded"):
        await collect(adapter.chat_stream(chat(user("hi"), stream=True)))


@pytest.mark.asyncio
async def test_429_retry_info_becomes_retry_after_when_no_header_is_sent() -> None:
    # Real Gemini sends the delay as a google.rpc.RetryInfo detail, not as a header.
    error = {
        "error": {
            "code": 429,
            "message": "quota exceeded",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34.2s"},
            ],
        }
    }
    adapter = build_provider(
        "gemini",
        ProviderConfig(kind="gemini", base_url="http://stub"),
        transport=httpx.MockTransport(lambda request: httpx.Response(429, json=error)),
    )

    with pytest.raises(RateLimited, match="quota exceeded") as plain:
        await adapter.chat(chat(user("hi")))
    with pytest.raises(RateLimited) as streamed:
        await collect(adapter.chat_stream(chat(user("hi"), stream=True)))

    assert plain.value.headers == streamed.value.headers == {"retry-after": "35"}
