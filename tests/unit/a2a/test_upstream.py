"""One upstream agent: its card kept for its TTL, given inline, or rewritten for callers from
a 0.3 card; against the real echo agent on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.a2a.cards import AgentCardView
from gateway.a2a.config import AgentConfig
from gateway.a2a.upstream import AgentUpstream
from gateway.errors import UpstreamError
from tests.support.a2a_agent import EchoAgent, running_agent


@pytest.fixture(scope="module")
def agent() -> Iterator[EchoAgent]:
    with running_agent() as running:
        yield running


@pytest.mark.asyncio
async def test_a_fetched_card_is_kept_for_its_ttl(agent: EchoAgent) -> None:
    now = [0.0]
    config = AgentConfig(url=agent.url, card_ttl_s=60)
    upstream = AgentUpstream("echo", config, clock=lambda: now[0])
    try:
        before = agent.card_fetches
        first = await upstream.card()
        now[0] = 59.0
        await upstream.card()
        assert agent.card_fetches == before + 1
        now[0] = 61.0
        await upstream.card()
        assert agent.card_fetches == before + 2
        assert await upstream.rpc_url() == f"{agent.url}/" == first.interface.url
    finally:
        await upstream.aclose()


@pytest.mark.asyncio
async def test_an_inline_card_is_never_fetched(agent: EchoAgent) -> None:
    card = {
        "name": "Inline",
        "description": "given in the config",
        "version": "1",
        "supportedInterfaces": [
            {"url": f"{agent.url}/", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
    }
    upstream = AgentUpstream("inline", AgentConfig(url=agent.url, card=card))
    try:
        before = agent.card_fetches
        assert (await upstream.card()).card.name == "Inline"
        assert agent.card_fetches == before
    finally:
        await upstream.aclose()


def test_a_0_3_card_is_served_pointed_at_the_gateway_without_its_other_interfaces() -> None:
    legacy = {
        "name": "Old",
        "description": "an A2A 0.3 agent",
        "version": "0.9",
        "url": "http://old.internal/rpc",
        "preferredTransport": "JSONRPC",
        "protocolVersion": "0.3.0",
        "additionalInterfaces": [{"url": "http://old.internal:50051", "transport": "GRPC"}],
        "capabilities": {"streaming": True, "pushNotifications": True},
        "securitySchemes": {"key": {"type": "apiKey", "in": "header", "name": "X-Key"}},
        "security": [{"key": []}],
        "skills": [],
    }
    view = AgentCardView.parse(legacy, name="old")
    assert view.interface.url == "http://old.internal/rpc"
    served = view.for_caller("http://gw/a2a/old")
    assert served["supportedInterfaces"] == [
        {"url": "http://gw/a2a/old", "protocolBinding": "JSONRPC", "protocolVersion": "0.3.0"}
    ]
    assert served["url"] == "http://gw/a2a/old"  # 0.3's own field, for 0.3 clients
    assert "old.internal" not in str(served)
    assert served["capabilities"]["pushNotifications"] is False
    assert list(served["securitySchemes"]) == ["raygate"]


def test_a_card_without_a_json_rpc_interface_is_refused() -> None:
    card = {
        "name": "Grpc only",
        "description": "",
        "version": "1",
        "supportedInterfaces": [{"url": "http://x:1", "protocolBinding": "GRPC"}],
    }
    with pytest.raises(UpstreamError, match="no JSON-RPC interface"):
        AgentCardView.parse(card, name="grpc")
