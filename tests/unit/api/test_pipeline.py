"""The pipeline's promises for every route, in process: each answer carries the gateway's
headers, is settled and audited once, and passes the output policy whether it came from an
upstream or from the cache, on either wire."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.cache.embedder import Embedder
from tests.support.gateway import InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{db}"}}
audit: {{prompt: full, response: full}}
policy:
  profiles:
    default:
      pii: {{"*": monitor}}
      output: {{EMAIL: redact}}
cache: {{isolation: global}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
"""
KEY = {"authorization": "Bearer sk-dev"}
ECHO_EMAIL = [{"role": "user", "content": "echo ana@example.org"}]


@pytest_asyncio.fixture
async def gateway(tmp_path: Path, embedder: Embedder) -> AsyncIterator[InProcessGateway]:
    config = CONFIG.format(db=tmp_path / "gw.db")
    async with in_process_gateway(config, embedder=embedder, headers=KEY) as gw:
        yield gw


def events(text: str) -> list[str]:
    return [line[7:] for line in text.splitlines() if line.startswith("event: ")]


@pytest.mark.asyncio
async def test_a_streamed_anthropic_message_is_audited_and_priced(
    gateway: InProcessGateway,
) -> None:
    body = {"model": "sim-small", "max_tokens": 40, "stream": True, "messages": ECHO_EMAIL}
    response = await gateway.post("/v1/messages", body)
    assert response.status_code == 200
    assert events(response.text)[-1] == "message_stop"
    (record,) = await gateway.records()
    assert (record["route"], record["status"], record["error_code"]) == ("/v1/messages", 200, None)
    assert record["tokens_in"] > 0 and record["tokens_out"] > 0
    assert record["cost_usd"] > 0
    assert record["route_taken"] == "sim/sim-small"


@pytest.mark.asyncio
@pytest.mark.parametrize("stream", [False, True])
async def test_the_output_policy_applies_to_cache_hits_on_both_wires(
    gateway: InProcessGateway, stream: bool
) -> None:
    chat = {"model": "sim-small", "max_tokens": 40, "messages": ECHO_EMAIL, "stream": stream}
    first = await gateway.post("/v1/chat/completions", chat)
    hit = await gateway.post("/v1/chat/completions", chat)
    message = {"model": "sim-small", "max_tokens": 40, "messages": ECHO_EMAIL, "stream": stream}
    anthropic_hit = await gateway.post("/v1/messages", message)
    assert first.headers["x-raygate-cache"] == "miss"
    assert hit.headers["x-raygate-cache"] == anthropic_hit.headers["x-raygate-cache"] == "exact"
    for response in (first, hit, anthropic_hit):
        assert response.status_code == 200
        assert "ana@example.org" not in response.text
        assert "[EMAIL_1]" in response.text
    assert len(await gateway.sim.requests()) == 1


@pytest.mark.asyncio
async def test_every_answer_carries_the_gateway_headers(gateway: InProcessGateway) -> None:
    def chat(text: str) -> dict[str, object]:
        return {"model": "sim-small", "messages": [{"role": "user", "content": text}]}

    whole = await gateway.post("/v1/chat/completions", chat("Hello there"))
    streamed = await gateway.post("/v1/chat/completions", {**chat("Goodbye"), "stream": True})
    for response in (whole, streamed):
        assert response.headers["x-raygate-route"] == "sim/sim-small"
        assert float(response.headers["x-raygate-overhead-ms"]) >= 0
        assert response.headers["x-raygate-request-id"].startswith("req_")
    assert float(whole.headers["x-raygate-cost-usd"]) > 0


@pytest.mark.asyncio
async def test_a_dropped_parameter_is_named_in_a_header(tmp_path: Path) -> None:
    config = f"""
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{tmp_path / "gw.db"}"}}
cache: {{enabled: false}}
providers:
  gemini: {{preset: gemini, base_url: "http://sim", api_key: simulated}}
models:
  lenient: {{targets: [gemini/gemini-sim], drop_params: [parallel_tool_calls]}}
  strict: {{targets: [gemini/gemini-sim]}}
"""
    async with in_process_gateway(config, headers=KEY) as gw:
        chat = {"messages": [{"role": "user", "content": "hi"}], "parallel_tool_calls": False}
        for stream in (False, True):
            lenient = await gw.post(
                "/v1/chat/completions", {**chat, "model": "lenient", "stream": stream}
            )
            assert lenient.status_code == 200, lenient.text
            assert lenient.headers["x-raygate-dropped-params"] == "parallel_tool_calls"
        strict = await gw.post("/v1/chat/completions", {**chat, "model": "strict"})
        assert (
            strict.status_code == 400 and strict.json()["error"]["param"] == "parallel_tool_calls"
        )
        assert "x-raygate-dropped-params" not in strict.headers
