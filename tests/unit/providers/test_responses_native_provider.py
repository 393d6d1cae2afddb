"""The OpenAI-compatible adapter calling the upstream simulator's `POST /v1/responses`
natively: only for requests translated from `/v1/responses`, only where the provider has the
Responses API; the simulator's wire output checked against the official SDK's types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette

from gateway.config import ProviderConfig
from gateway.errors import RateLimited, UpstreamError, UpstreamUnavailable
from gateway.protocol.openai import ChatCompletionRequest
from gateway.protocol.responses import ResponsesRequest
from gateway.protocol.responses_convert import ResponsesChatRequest, responses_to_chat_request
from gateway.providers.base import Provider
from gateway.providers.registry import build_provider
from gateway.simulator import SimulatorSettings, create_app
from tests.support.simulator import add_faults, collect, received, serve, streamed_text

TOOL = {
    "type": "function",
    "name": "lookup",
    "parameters": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
}


def translated(**fields: Any) -> ResponsesChatRequest:
    return responses_to_chat_request(
        ResponsesRequest.model_validate({"model": "sim-small", **fields})
    )


def sim_provider(app: Starlette, **config: Any) -> Provider:
    settings = {"preset": "simulator", "base_url": "http://sim/v1", **config}
    return build_provider(
        "sim",
        ProviderConfig.model_validate(settings),
        transport=httpx.ASGITransport(app=app),
    )


@pytest.fixture
def sim() -> Starlette:
    return create_app(SimulatorSettings(seed=1, answer_words=5))


@pytest_asyncio.fixture
async def provider(sim: Starlette) -> AsyncIterator[Provider]:
    adapter = sim_provider(sim)
    yield adapter
    await adapter.aclose()


async def paths(sim: Starlette) -> list[str]:
    return [r["path"] for r in await received(sim) if r["method"] == "POST"]


# --- which requests go native -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_translated_request_goes_to_the_responses_api(
    sim: Starlette, provider: Provider
) -> None:
    chat = await provider.chat(translated(input="Name a city", instructions="Be brief."))
    assert await paths(sim) == ["/v1/responses"]
    body = (await received(sim))[-1]["json"]
    assert body["store"] is False and body["stream"] is False
    assert body["input"][0] == {"type": "message", "role": "system", "content": "Be brief."}
    [choice] = chat.choices
    assert choice.message.text().startswith("Simulated answer from sim-small: Name a city")
    assert choice.finish_reason == "stop"
    assert chat.usage is not None and chat.usage.total_tokens > 0


@pytest.mark.asyncio
async def test_a_chat_route_request_stays_on_chat_completions(
    sim: Starlette, provider: Provider
) -> None:
    plain = ChatCompletionRequest.model_validate(
        {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
    )
    await provider.chat(plain)
    assert await paths(sim) == ["/v1/chat/completions"]


@pytest.mark.asyncio
async def test_a_provider_with_the_flag_cleared_takes_translated_requests_as_chat(
    sim: Starlette,
) -> None:
    adapter = sim_provider(sim, responses_api=False)
    await adapter.chat(translated(input="hi"))
    await adapter.aclose()
    assert await paths(sim) == ["/v1/chat/completions"]


def test_the_flag_is_refused_for_a_wire_format_without_the_responses_api() -> None:
    for settings in (
        {"kind": "anthropic", "base_url": "http://x", "responses_api": True},
        {"preset": "azure", "base_url": "http://x", "responses_api": True},
    ):
        with pytest.raises(ValidationError, match="responses_api"):
            ProviderConfig.model_validate(settings)
    assert ProviderConfig(preset="openai").resolved_preset.responses_api
    assert not ProviderConfig(preset="anthropic").resolved_preset.responses_api


@pytest.mark.asyncio
async def test_a_function_call_comes_back_as_a_tool_call(provider: Provider) -> None:
    chat = await provider.chat(translated(input="Look up 'gateway'", tools=[TOOL]))
    [choice] = chat.choices
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.id and call.function.name == "lookup"
    assert call.function.arguments == '{"word": "example"}'


@pytest.mark.asyncio
async def test_max_output_tokens_cuts_the_answer_to_length(provider: Provider) -> None:
    chat = await provider.chat(translated(input="a long answer please", max_output_tokens=3))
    assert chat.choices[0].finish_reason == "length"
    assert chat.usage is not None and chat.usage.completion_tokens == 3


# --- streams ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_stream_arrives_as_chunks_with_usage_last(
    sim: Starlette, provider: Provider
) -> None:
    chunks = await collect(provider.chat_stream(translated(input="Stream it", stream=True)))
    assert await paths(sim) == ["/v1/responses"]
    assert (await received(sim))[-1]["json"]["stream"] is True
    assert streamed_text(chunks).startswith("Simulated answer from sim-small: Stream it")
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


@pytest.mark.asyncio
async def test_a_streamed_function_call_arrives_as_tool_call_deltas(provider: Provider) -> None:
    request = translated(input="Look up 'gateway'", tools=[TOOL], stream=True)
    chunks = await collect(provider.chat_stream(request))
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert calls[0].function.name == "lookup"
    assert "".join(c.function.arguments or "" for c in calls) == '{"word": "example"}'
    assert chunks[-2].choices[0].finish_reason == "tool_calls"


# --- errors map as on the chat path -----------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "error"), [(429, RateLimited), (503, UpstreamUnavailable)])
async def test_an_error_status_maps_like_chat(
    sim: Starlette, provider: Provider, status: int, error: type[Exception]
) -> None:
    await add_faults(sim, {"kind": "status", "status": status, "match_path": "/v1/responses"})
    with pytest.raises(error):
        await provider.chat(translated(input="hi"))


@pytest.mark.asyncio
async def test_a_malformed_stream_event_is_an_error(sim: Starlette, provider: Provider) -> None:
    await add_faults(sim, {"kind": "malformed", "after_chunks": 4})
    with pytest.raises(UpstreamError, match="malformed"):
        await collect(provider.chat_stream(translated(input="hi", stream=True)))


@pytest.mark.asyncio
async def test_a_stream_cut_mid_way_ends_with_an_error_never_cleanly() -> None:
    app = create_app(SimulatorSettings(seed=1, answer_words=8))
    with serve(app) as url:
        await add_faults(url, {"kind": "cut", "after_chunks": 5})
        adapter = build_provider("sim", ProviderConfig(preset="simulator", base_url=f"{url}/v1"))
        chunks = []
        with pytest.raises(UpstreamError):
            async for chunk in adapter.chat_stream(translated(input="hi there", stream=True)):
                chunks.append(chunk)
        await adapter.aclose()
    assert streamed_text(chunks)  # it had started
    assert all(not c.choices or c.choices[0].finish_reason is None for c in chunks)
    assert all(c.usage is None for c in chunks)


# --- the simulator speaks the official wire format --------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("tools", [None, [TOOL]])
async def test_the_simulators_responses_parse_with_the_official_sdk_types(
    sim: Starlette, tools: list[dict[str, Any]] | None
) -> None:
    body: dict[str, Any] = {"model": "sim-small", "input": "Look up 'ray'", "store": False}
    if tools:
        body["tools"] = tools
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=sim), base_url="http://sim"
    ) as client:
        whole = (await client.post("/v1/responses", json=body)).json()
        streamed = await client.post("/v1/responses", json={**body, "stream": True})
    response = SDKResponse.model_validate(whole)
    assert response.status == "completed" and response.usage is not None
    assert response.output[0].type == ("function_call" if tools else "message")
    adapter: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
    data = [line[6:] for line in streamed.text.splitlines() if line.startswith("data: ")]
    events = [adapter.validate_json(line) for line in data]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert SDKResponse.model_validate(events[-1].response.model_dump()).output
