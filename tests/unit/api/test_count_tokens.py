"""Anthropic's token counter (`POST /v1/messages/count_tokens`) through the app in process,
with Anthropic's own SDK: an estimate, no upstream asked, refused like any model route."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import httpx2
import pytest
import pytest_asyncio

from tests.support.gateway import InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{db}"}}
cache: {{enabled: false}}
budgets:
  users: {{default: {{usd_per_day: 0.0000001}}}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
"""


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(CONFIG.format(db=tmp_path / "gw.db")) as gw:
        yield gw


def sdk(gateway: InProcessGateway) -> anthropic.AsyncAnthropic:
    # Anthropic's SDK brings its own HTTP client package (httpx2), over the same app.
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gateway.app), base_url="http://gw")
    return anthropic.AsyncAnthropic(
        base_url="http://gw", api_key="sk-dev", http_client=http, max_retries=0
    )


@pytest.mark.asyncio
async def test_the_sdk_counts_tokens_and_no_upstream_is_asked(gateway: InProcessGateway) -> None:
    client = sdk(gateway)
    short = await client.messages.count_tokens(
        model="sim-small", messages=[{"role": "user", "content": "Hello"}]
    )
    longer = await client.messages.count_tokens(
        model="sim-small",
        system="You are a careful assistant.",
        messages=[{"role": "user", "content": "Hello, how many tokens is this sentence?"}],
        tools=[{"name": "lookup", "description": "Look it up", "input_schema": {"type": "object"}}],
    )
    assert 0 < short.input_tokens < longer.input_tokens
    assert await gateway.sim.requests() == []


@pytest.mark.asyncio
async def test_counting_is_refused_like_any_model_route(gateway: InProcessGateway) -> None:
    client = sdk(gateway)
    with pytest.raises(anthropic.NotFoundError):
        await client.messages.count_tokens(
            model="no-such-model", messages=[{"role": "user", "content": "Hi"}]
        )
    anonymous = await gateway.http.post(
        "/v1/messages/count_tokens",
        json={"model": "sim-small", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["type"] == "error"
