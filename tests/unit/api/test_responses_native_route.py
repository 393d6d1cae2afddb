"""`/v1/responses` served natively (the upstream's own `POST /v1/responses`) through the whole
app in process, with the official `openai` SDK: the chat pipeline still applies (audit,
metering, stored conversations), chat routes stay on chat, and a fallback from a native
target to a translated one answers in the target's own format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import pytest_asyncio

from tests.support.gateway import InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev, key_secret: "0123456789abcdef0123456789abcdef"}}
storage: {{url: "sqlite:///{db}"}}
audit: {{prompt: full, response: full}}
cache: {{enabled: false}}
providers:
  native: {{preset: simulator, base_url: "http://sim/v1"}}
  translated: {{preset: simulator, base_url: "http://sim/v1", responses_api: false}}
models:
  sim-small: {{targets: [native/sim-small]}}
  mixed: {{targets: [native/sim-primary, translated/sim-backup]}}  # priority: in order
"""
TOOL: Any = {
    "type": "function",
    "name": "lookup",
    "parameters": {
        "type": "object",
        "properties": {"word": {"type": "string"}},
        "required": ["word"],
    },
}


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(CONFIG.format(db=tmp_path / "gw.db")) as gw:
        yield gw


def sdk(gateway: InProcessGateway) -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gateway.app), base_url="http://gw")
    return openai.AsyncOpenAI(
        base_url="http://gw/v1", api_key="sk-dev", http_client=http, max_retries=0
    )


async def upstream_calls(gateway: InProcessGateway) -> list[tuple[str, dict[str, Any]]]:
    return [(r["path"], r["json"]) for r in await gateway.sim.requests() if r["json"]]


@pytest.mark.asyncio
async def test_a_response_is_called_natively_and_audited_like_chat(
    gateway: InProcessGateway,
) -> None:
    response = await sdk(gateway).responses.create(
        model="sim-small", input="Name a French city", instructions="Be brief."
    )
    assert response.status == "completed" and response.id.startswith("resp_")
    assert "Name a French city" in response.output_text
    [(path, body)] = await upstream_calls(gateway)
    assert path == "/v1/responses" and body["store"] is False
    assert body["input"][0] == {"type": "message", "role": "system", "content": "Be brief."}
    assert response.id != "resp_sim000000000001"  # the gateway's id, not the upstream's
    record = next(r for r in await gateway.records() if r["route"] == "/v1/responses")
    assert record["status"] == 200
    assert response.usage is not None and record["tokens_out"] == response.usage.output_tokens
    assert record["response"] == response.output_text


@pytest.mark.asyncio
async def test_a_native_stream_arrives_as_typed_events(gateway: InProcessGateway) -> None:
    stream = await sdk(gateway).responses.create(model="sim-small", input="Stream it", stream=True)
    events = [event async for event in stream]
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas.startswith("Simulated answer from sim-small: Stream it")
    assert [path for path, _ in await upstream_calls(gateway)] == ["/v1/responses"]


@pytest.mark.asyncio
async def test_the_conversation_and_tool_results_go_whole_never_by_upstream_id(
    gateway: InProcessGateway,
) -> None:
    client = sdk(gateway)
    first = await client.responses.create(
        model="sim-small", input="What does 'gateway' mean?", tools=[TOOL]
    )
    call = first.output[0]
    assert call.type == "function_call" and call.name == "lookup"
    second = await client.responses.create(
        model="sim-small",
        previous_response_id=first.id,
        tools=[TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "a way"}],
    )
    assert 'the tool returned "a way"' in second.output_text
    path, body = (await upstream_calls(gateway))[-1]
    assert path == "/v1/responses" and "previous_response_id" not in body
    assert [item["type"] for item in body["input"]] == [
        "message",
        "function_call",
        "function_call_output",
    ]
    assert body["input"][1]["call_id"] == call.call_id


@pytest.mark.asyncio
async def test_chat_requests_to_the_same_provider_stay_on_chat_completions(
    gateway: InProcessGateway,
) -> None:
    answer = await gateway.chat("hello", headers={"authorization": "Bearer sk-dev"})
    assert answer.status_code == 200, answer.text
    assert [path for path, _ in await upstream_calls(gateway)] == ["/v1/chat/completions"]


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_a_fallback_from_a_native_target_to_a_translated_one(
    gateway: InProcessGateway, stream: bool
) -> None:
    await gateway.sim.fault(kind="status", status=503, match_path="/v1/responses", count=None)
    raw = await sdk(gateway).responses.with_raw_response.create(
        model="mixed", input="Fall over", stream=stream
    )
    if stream:
        events = [event async for event in raw.parse()]
        assert events[-1].type == "response.completed"
        text = events[-1].response.output_text  # type: ignore[union-attr]
    else:
        text = raw.parse().output_text
    assert text.startswith("Simulated answer from sim-backup: Fall over")
    assert "translated" in raw.headers["x-raygate-route"]
    calls = await upstream_calls(gateway)
    assert calls[0][0] == "/v1/responses" and calls[0][1]["model"] == "sim-primary"
    assert calls[-1][0] == "/v1/chat/completions" and calls[-1][1]["model"] == "sim-backup"
