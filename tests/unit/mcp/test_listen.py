"""`subscriptions/listen` through the gateway in process: the official `mcp` client in its
default mode (2026-07-28, no session, the listen request's response is the stream) against
`/mcp/tools` served on loopback, two real upstreams behind it, the gateway's access rules and
audit in between."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ResourceUpdated, ServerEvent, Subscription, ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.mcp.names import split_resource_uri
from tests.servers.mcp_upstream import HttpUpstream, serve_http
from tests.support.gateway import InProcessGateway, in_process_gateway
from tests.support.mcp import served

CONFIG = """
auth:
  trusted_header:
    trusted_proxies: [127.0.0.1/32]
    groups_header: x-forwarded-groups
storage: {{url: "sqlite:///{db}"}}
cache: {{enabled: false}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
mcp:
  servers:
    alpha: {{transport: http, url: "{alpha}"}}
    beta: {{transport: http, url: "{beta}"}}
  virtual_servers:
    tools:
      servers: [alpha, beta]
      access:
        default: {{servers: [alpha], tools: ["alpha__*"]}}
        groups:
          engineering: {{servers: ["*"], tools: ["*"]}}
"""
README = "mcp://alpha/note%3A%2F%2Falpha%2Freadme"
OWNER = "mcp://alpha/note%3A%2F%2Falpha%2Fowner"
BETA_README = "mcp://beta/note%3A%2F%2Fbeta%2Freadme"


def caller(user: str, groups: str = "engineering") -> dict[str, str]:
    return {"x-forwarded-user": user, "x-forwarded-groups": groups}


@pytest.fixture(scope="module")
def beta() -> Iterator[HttpUpstream]:
    with serve_http("beta") as upstream:
        yield upstream


@pytest_asyncio.fixture
async def gateway(
    tmp_path: Path, alpha: HttpUpstream, beta: HttpUpstream
) -> AsyncIterator[InProcessGateway]:
    config = CONFIG.format(db=tmp_path / "gw.db", alpha=alpha.url, beta=beta.url)
    async with in_process_gateway(config) as gw:
        try:
            yield gw
        finally:
            await gw.app.state.mcp.aclose()


@pytest_asyncio.fixture
async def base(gateway: InProcessGateway) -> AsyncIterator[str]:
    """The gateway on a loopback port: a listen stream stays open, which the in-process
    ASGI transport cannot carry."""
    async with served(gateway.app) as url:
        yield url


@contextlib.asynccontextmanager
async def client(base: str, user: str, groups: str = "engineering") -> AsyncIterator[Client]:
    """The official client in its default mode."""
    async with httpx2.AsyncClient(headers=caller(user, groups), timeout=30) as http:
        transport = streamable_http_client(f"{base}/mcp/tools", http_client=http)
        async with Client(transport) as entered:
            yield entered


class Heard:
    """The events one listen stream delivered, read in a task, and a way to wait for one."""

    def __init__(self, subscription: Subscription) -> None:
        self.events: list[ServerEvent] = []
        self._new = asyncio.Condition()
        self._task = asyncio.create_task(self._read(subscription))

    async def _read(self, subscription: Subscription) -> None:
        async for event in subscription:
            async with self._new:
                self.events.append(event)
                self._new.notify_all()

    async def until(self, action: Callable[[], Awaitable[Any]], wanted: ServerEvent) -> None:
        """Do `action` until `wanted` is heard (an event announced before the gateway's watch
        listens upstream with this stream's filter is not replayed), within 30 s."""
        deadline = asyncio.get_running_loop().time() + 30
        seen = self.events.count(wanted)
        for _ in itertools.count():
            await action()
            with contextlib.suppress(TimeoutError):
                async with self._new, asyncio.timeout(1.0):
                    await self._new.wait_for(lambda: self.events.count(wanted) > seen)
                    return
            assert asyncio.get_running_loop().time() < deadline, f"{wanted} never heard"

    async def ended(self) -> None:
        """Wait until the stream has ended; raises what ended it, unless the server's close."""
        await self._task

    async def aclose(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def grow(client: Client, server: str) -> Callable[[], Awaitable[Any]]:
    return lambda: client.call_tool(f"{server}__grow", {"tool": f"grown_{os.urandom(3).hex()}"})


def touch(client: Client, uri: str) -> Callable[[], Awaitable[Any]]:
    upstream_uri = split_resource_uri(uri)[1]  # type: ignore[index]
    server = split_resource_uri(uri)[0]  # type: ignore[index]
    return lambda: client.call_tool(f"{server}__touch", {"uri": upstream_uri})


async def listen_records(gateway: InProcessGateway, count: int) -> list[dict[str, Any]]:
    """The audit records of `count` listen requests, once written (when each stream closed)."""
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        records = [
            r
            for r in await gateway.records()
            if any(
                d["rule"] == "mcp.notifications" and (d["detail"] or "").startswith("listen ")
                for d in r["decisions"]
            )
        ]
        if len(records) >= count or asyncio.get_running_loop().time() > deadline:
            assert len(records) == count
            return records
        await asyncio.sleep(0.05)  # polling the audit store, not standing in for an event


def notifications_detail(record: dict[str, Any]) -> str:
    return next(d["detail"] for d in record["decisions"] if d["rule"] == "mcp.notifications")


@pytest.mark.asyncio
async def test_a_listener_hears_upstream_tool_list_changes_and_its_stream_is_audited(
    gateway: InProcessGateway, base: str
) -> None:
    async with client(base, "erin") as erin:
        assert erin.protocol_version in MODERN_PROTOCOL_VERSIONS  # no session, no GET stream
        capabilities = erin.server_capabilities
        assert capabilities.tools and capabilities.tools.list_changed
        assert capabilities.resources and capabilities.resources.subscribe
        async with erin.listen(tools_list_changed=True) as subscription:
            heard = Heard(subscription)
            await heard.until(grow(erin, "alpha"), ToolsListChanged())
            await heard.aclose()
        assert set(heard.events) == {ToolsListChanged()}
        listed = {t.name for t in (await erin.list_tools()).tools}
        assert any(name.startswith("alpha__grown_") for name in listed)  # re-listed: namespaced

    (record,) = await listen_records(gateway, 1)
    assert record["principal"]["user_id"] == "erin" and record["status"] == 200
    detail = notifications_detail(record)
    assert "servers=alpha,beta" in detail
    relayed = int(detail.split("relayed=")[1].split()[0])
    assert relayed == len(heard.events)


@pytest.mark.asyncio
async def test_a_listener_hears_updates_of_the_resources_it_asked_for_only(
    gateway: InProcessGateway, base: str
) -> None:
    async with client(base, "erin") as erin, client(base, "finn") as finn:
        async with (
            erin.listen(resource_subscriptions=[README]) as erin_sub,
            finn.listen(resource_subscriptions=[OWNER]) as finn_sub,
        ):
            assert erin_sub.honored.resource_subscriptions == [README]
            heard_erin, heard_finn = Heard(erin_sub), Heard(finn_sub)
            await heard_erin.until(touch(erin, README), ResourceUpdated(README))
            await heard_finn.until(touch(finn, OWNER), ResourceUpdated(OWNER))
            # Each stream is in order: an `owner` update relayed to erin would come before this.
            await heard_erin.until(touch(erin, README), ResourceUpdated(README))
            await heard_erin.aclose()
            await heard_finn.aclose()
    assert set(heard_erin.events) == {ResourceUpdated(README)}  # the gateway's URI, never B's
    assert set(heard_finn.events) == {ResourceUpdated(OWNER)}


@pytest.mark.asyncio
async def test_a_caller_hears_nothing_of_an_upstream_they_may_not_use(
    gateway: InProcessGateway, base: str
) -> None:
    async with client(base, "erin") as erin, client(base, "sam", "support") as sam:
        async with (
            erin.listen(tools_list_changed=True) as erin_sub,
            sam.listen(
                tools_list_changed=True,
                resource_subscriptions=[BETA_README, README, "note://alpha/readme"],
            ) as sam_sub,
        ):
            # beta is not for sam's groups, and an upstream's own URI is not the gateway's:
            # both are left out of the honored filter.
            assert sam_sub.honored.resource_subscriptions == [README]
            assert sam_sub.honored.tools_list_changed is True
            heard_erin, heard_sam = Heard(erin_sub), Heard(sam_sub)
            await heard_erin.until(grow(erin, "beta"), ToolsListChanged())
            # Heard in order: beta's change, had it been relayed to sam, would come first.
            await heard_sam.until(touch(sam, README), ResourceUpdated(README))
            await heard_erin.aclose()
            await heard_sam.aclose()
    assert set(heard_sam.events) == {ResourceUpdated(README)}
    records = {r["principal"]["user_id"]: r for r in await listen_records(gateway, 2)}
    assert notifications_detail(records["sam"]).split()[2:] == ["servers=alpha", "refused_uris=2"]


@pytest.mark.asyncio
async def test_a_listen_stream_ends_gracefully_when_the_replica_shuts_down(
    gateway: InProcessGateway, base: str
) -> None:
    async with client(base, "erin") as erin:
        async with erin.listen(tools_list_changed=True) as subscription:
            heard = Heard(subscription)
            await heard.until(grow(erin, "alpha"), ToolsListChanged())
            await gateway.app.state.mcp.hub.aclose()
            async with asyncio.timeout(10):  # ends with the listen result: no SubscriptionLost
                await heard.ended()
    (record,) = await listen_records(gateway, 1)
    assert record["status"] == 200
