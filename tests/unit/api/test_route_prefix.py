"""The gateway mounted under a prefix (a Serve route prefix other than "/", which ASGI passes
as `root_path`) reads its routes as it does at the root: the cache header, the audit record's
route and the error shape of each API come out the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.support.gateway import InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{db}"}}
cache: {{enabled: false}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
"""
KEY = {"authorization": "Bearer sk-dev"}
PREFIX = "/raygate"


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(CONFIG.format(db=tmp_path / "gw.db"), headers=KEY) as gw:
        yield gw


@pytest_asyncio.fixture
async def mounted(gateway: InProcessGateway) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the same app served under PREFIX."""
    transport = httpx.ASGITransport(app=gateway.app, root_path=PREFIX)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw", headers=KEY) as http:
        yield http


@pytest.mark.asyncio
async def test_a_chat_under_a_prefix_is_answered_labelled_and_audited_as_at_the_root(
    gateway: InProcessGateway, mounted: httpx.AsyncClient
) -> None:
    body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
    response = await mounted.post(f"{PREFIX}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-raygate-cache"] == "off"
    [record] = await gateway.records()
    assert record["route"] == "/v1/chat/completions"


@pytest.mark.asyncio
async def test_an_anthropic_error_under_a_prefix_keeps_anthropic_s_shape(
    mounted: httpx.AsyncClient,
) -> None:
    response = await mounted.post(f"{PREFIX}/v1/messages", content=b"{not json")
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
