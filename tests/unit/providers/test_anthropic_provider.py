"""The Anthropic adapter against the upstream simulator's `/v1/messages`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from gateway.config import ProviderConfig
from gateway.errors import (
    RateLimited,
    UnsupportedParameter,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.protocol.openai import ChatCompletionRequest
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider
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

MODEL = "claude-3-5-haiku-latest"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
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
    return create_app(SimulatorSettings(answer_words=6))


@pytest_asyncio.fixture
async def provider(sim: Starlette) -> AsyncIterator[Provider]:
    adapter = provider_for(sim, "anthropic")
    yield adapter
    await adapter.aclose()


def test_registry_builds_the_anthropic_adapter(sim: Starlette) -> None:
    assert isinstance(provider_for(sim, "anthropic"), AnthropicProvider)


# --- plain and streamed answers ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_chat_returns_the_upstream_answer_with_usage(provider: Provider) -> None:
    answer = await provider.chat(chat({"role": "system", "content": "be brief"}, user("hi there")))

    choice = answer.choices[0]
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.message.content.startswith(f"Simulated answer from {MODEL}: hi there")
    assert choice.finish_reason == "stop"
    assert answer.id.startswith("msg_")
    assert answer.model == MODEL
    assert answer.usage is not None
    assert answer.usage.prompt_tokens == 4  # "be brief" + "hi there", one token per word
    assert answer.usage.completion_tokens == len(choice.message.content.split())
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


@pytest.mark.asyncio
async def test_stream_relays_the_whole_answer_then_finish_then_usage(provider: Provider) -> None:
    whole = await provider.chat(chat(user("stream me please")))
    chunks = await collect(provider.chat_stream(chat(user("stream me please"), stream=True)))

    assert chunks[0].choices[0].delta.role == "assistant"
    assert streamed_text(chunks) == whole.choices[0].message.content
    finish, last = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop"
    assert last.choices == []
    assert last.usage is not None and whole.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert len({chunk.id for chunk in chunks}) == 1


@pytest.mark.asyncio
async def test_stop_sequence_ends_the_answer_with_finish_reason_stop(provider: Provider) -> None:
    answer = await provider.chat(chat(user("alpha beta gamma"), stop="beta"))

    assert answer.choices[0].message.content == f"Simulated answer from {MODEL}: alpha "
    assert answer.choices[0].finish_reason == "stop"


@pytest.mark.asyncio
async def test_max_tokens_cut_maps_to_finish_reason_length(provider: Provider) -> None:
    answer = await provider.chat(chat(user("one two three"), max_tokens=3))

    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None and answer.usage.completion_tokens == 3


# --- what the upstream receives ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_upstream_receives_the_translated_request(sim: Starlette, provider: Provider) -> None:
    await provider.chat(
        chat(
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": "answer in English"},
            user("hi"),
            max_completion_tokens=50,
            temperature=0.5,
            stop=["END"],
            user="user-42",
        )
    )

    (request,) = await received(sim)
    assert request["path"] == "/v1/messages"
    assert request["headers"]["anthropic-version"] == "2023-06-01"
    assert request["headers"]["x-api-key"] == "<redacted>"  # sent, and redacted in the log
    assert "authorization" not in request["headers"]
    assert request["json"] == {
        "model": MODEL,
        "max_tokens": 50,
        "system": [
            {"type": "text", "text": "be brief"},
            {"type": "text", "text": "answer in English"},
        ],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "stop_sequences": ["END"],
        "temperature": 0.5,
        "metadata": {"user_id": "user-42"},
    }


@pytest.mark.asyncio
async def test_configured_api_version_is_sent(sim: Starlette) -> None:
    adapter = provider_for(sim, "anthropic", api_version="2024-01-01")
    await adapter.chat(chat(user("hi")))
    await adapter.aclose()

    (request,) = await received(sim)
    assert request["headers"]["anthropic-version"] == "2024-01-01"


@pytest.mark.asyncio
async def test_streamed_request_asks_for_a_stream(sim: Starlette, provider: Provider) -> None:
    await collect(
        provider.chat_stream(chat(user("hi"), stream=True, stream_options={"include_usage": True}))
    )

    (request,) = await received(sim)
    assert request["json"]["stream"] is True
    assert "stream_options" not in request["json"]


@pytest.mark.asyncio
async def test_tool_results_reach_upstream_as_one_user_message_of_tool_result_blocks(
    sim: Starlette, provider: Provider
) -> None:
    calls = [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
        {
            "id": "toolu_2",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        },
    ]
    answer = await provider.chat(
        chat(
            user("weather in Paris and Rome?"),
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "rainy"},
            tools=[WEATHER_TOOL],
        )
    )

    (request,) = await received(sim)
    assert request["json"]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_2",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "rainy"},
            ],
        },
    ]
    assert request["json"]["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER_TOOL["function"]["parameters"],  # type: ignore[index]
        }
    ]
    assert answer.choices[0].message.content == (
        f'Simulated answer from {MODEL}: the tool returned "sunny rainy"'
    )


@pytest.mark.asyncio
async def test_image_data_url_reaches_upstream_as_a_base64_source(
    sim: Starlette, provider: Provider
) -> None:
    parts = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    await provider.chat(chat({"role": "user", "content": parts}))

    (request,) = await received(sim)
    assert request["json"]["messages"][0]["content"] == [
        {"type": "text", "text": "what is this?"},
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


# --- tool calls -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_tool_call_comes_back_as_openai_tool_calls(provider: Provider) -> None:
    answer = await provider.chat(chat(user("weather?"), tools=[WEATHER_TOOL]))

    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls or []
    assert call.id is not None and call.id.startswith("toolu_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments or "") == {"city": "example"}


@pytest.mark.asyncio
async def test_streamed_tool_call_sends_id_and_name_then_argument_fragments(
    provider: Provider,
) -> None:
    chunks = await collect(
        provider.chat_stream(chat(user("weather?"), tools=[WEATHER_TOOL], stream=True))
    )

    deltas = [call for c in chunks for ch in c.choices for call in ch.delta.tool_calls or []]
    first, *rest = deltas
    assert first.index == 0 and first.id is not None and first.id.startswith("toolu_")
    assert first.function.name == "get_weather"
    assert len(rest) >= 2, "the arguments arrive in fragments"
    assert all(d.index == 0 and d.id is None and d.function.name is None for d in rest)
    arguments = "".join(d.function.arguments or "" for d in deltas)
    assert json.loads(arguments) == {"city": "example"}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


@pytest.mark.asyncio
async def test_forced_tool_choice_reaches_upstream(sim: Starlette, provider: Provider) -> None:
    choice = {"type": "function", "function": {"name": "get_weather"}}
    await provider.chat(
        chat(user("weather?"), tools=[WEATHER_TOOL], tool_choice=choice, parallel_tool_calls=False)
    )

    (request,) = await received(sim)
    assert request["json"]["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }


@pytest.mark.asyncio
async def test_json_schema_response_format_answers_with_json_content(
    sim: Starlette, provider: Provider
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}, "n": {"type": "integer"}},
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "r", "schema": schema}}

    answer = await provider.chat(chat(user("give json"), response_format=response_format))
    chunks = await collect(
        provider.chat_stream(chat(user("give json"), response_format=response_format, stream=True))
    )

    assert json.loads(answer.choices[0].message.content or "") == {"answer": "example", "n": 1}
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.tool_calls is None
    assert json.loads(streamed_text(chunks)) == {"answer": "example", "n": 1}
    assert chunks[-2].choices[0].finish_reason == "stop"
    request = (await received(sim))[0]["json"]
    assert request["tools"][0]["input_schema"] == schema
    assert request["tool_choice"] == {"type": "tool", "name": request["tools"][0]["name"]}


# --- refused before sending -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fields", "param"),
    [({"n": 2}, "n"), ({"temperature": 1.5}, "temperature"), ({"seed": 7}, "seed")],
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
async def test_preset_unsupported_params_are_checked_first(sim: Starlette) -> None:
    adapter = build_provider(
        "claude",
        ProviderConfig(preset="anthropic", base_url="http://sim", api_key="k"),
        transport=httpx.ASGITransport(app=sim),
    )
    with pytest.raises(UnsupportedParameter) as refused:
        await adapter.chat(chat(user("hi"), presence_penalty=0.5))
    assert refused.value.param == "presence_penalty"
    assert await received(sim) == []
    # Its no-op value asks for nothing Anthropic would not do: it is left out, not refused.
    await adapter.chat(chat(user("hi"), presence_penalty=0.0))
    await adapter.aclose()
    assert "presence_penalty" not in (await received(sim))[0]["json"]


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

    assert plain.value.headers == {"retry-after": "2"}
    assert streamed.value.headers == {"retry-after": "2"}


@pytest.mark.asyncio
@pytest.mark.parametrize("status", [529, 503])
async def test_overloaded_or_unavailable_becomes_upstream_unavailable(
    sim: Starlette, provider: Provider, status: int
) -> None:
    await add_faults(sim, {"kind": "status", "status": status, "count": 2})

    with pytest.raises(UpstreamUnavailable):
        await provider.chat(chat(user("hi")))
    with pytest.raises(UpstreamUnavailable):
        await collect(provider.chat_stream(chat(user("hi"), stream=True)))


@pytest.mark.asyncio
async def test_malformed_body_raises_upstream_error(sim: Starlette, provider: Provider) -> None:
    await add_faults(sim, {"kind": "malformed"})

    with pytest.raises(UpstreamError, match="not JSON"):
        await provider.chat(chat(user("hi")))


@pytest.mark.asyncio
async def test_malformed_stream_chunk_raises_upstream_error(
    sim: Starlette, provider: Provider
) -> None:
    await add_faults(sim, {"kind": "malformed", "after_chunks": 4})
    chunks = []

    with pytest.raises(UpstreamError, match="malformed"):
        async for chunk in provider.chat_stream(chat(user("hi"), stream=True)):
            chunks.append(chunk)

    assert streamed_text(chunks), "the good chunks before the bad one were relayed"
    assert all(c.usage is None for c in chunks)


@pytest.mark.asyncio
async def test_cut_stream_raises_upstream_error() -> None:
    app = create_app(SimulatorSettings(answer_words=6))
    with serve(app) as url:
        await add_faults(url, {"kind": "cut", "after_chunks": 4})
        adapter = build_provider("claude", ProviderConfig(kind="anthropic", base_url=url))
        chunks = []
        with pytest.raises(UpstreamError, match="broke"):
            async for chunk in adapter.chat_stream(chat(user("hi"), stream=True)):
                chunks.append(chunk)
        await adapter.aclose()

    assert streamed_text(chunks)
    assert all(c.usage is None for c in chunks)


# --- stream endings the simulator cannot produce ----------------------------------------------


def _sse(*events: dict[str, Any]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1},
    },
}
_TEXT = [
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
]


def _stub(body: bytes, status: int = 200) -> Provider:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})

    return build_provider(
        "claude",
        ProviderConfig(kind="anthropic", base_url="http://stub"),
        transport=httpx.MockTransport(handler),
    )


@pytest.mark.asyncio
async def test_stream_ending_without_message_stop_raises_upstream_error() -> None:
    adapter = _stub(_sse(_START, *_TEXT, {"type": "content_block_stop", "index": 0}))

    with pytest.raises(UpstreamError, match="message_stop"):
        await collect(adapter.chat_stream(chat(user("hi"), stream=True)))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("kind", "error"),
    [("overloaded_error", UpstreamUnavailable), ("api_error", UpstreamError)],
)
async def test_error_event_mid_stream_raises(kind: str, error: type[Exception]) -> None:
    failure = {"type": "error", "error": {"type": kind, "message": "boom"}}
    adapter = _stub(_sse(_START, *_TEXT, failure))
    chunks = []

    with pytest.raises(error, match="boom") as raised:
        async for chunk in adapter.chat_stream(chat(user("hi"), stream=True)):
            chunks.append(chunk)

    assert streamed_text(chunks) == "Hi"
    if error is UpstreamError:
        assert not isinstance(raised.value, UpstreamUnavailable)


@pytest.mark.asyncio
async def test_answer_that_is_not_a_message_raises_upstream_error() -> None:
    adapter = _stub(json.dumps({"unexpected": True}).encode())

    with pytest.raises(UpstreamError, match="not Anthropic's"):
        await adapter.chat(chat(user("hi")))
