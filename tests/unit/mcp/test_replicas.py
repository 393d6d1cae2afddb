"""MCP sessions across ingress replicas without stickiness: two gateway apps over one database
(as two Serve replicas have), behind a proxy that sends every GET to one and every POST and
DELETE to the other, the official `mcp` client in front, a real upstream behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
import pytest_asyncio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.types import Message, Receive, Scope, Send

from tests.servers.mcp_upstream import HttpUpstream
from tests.support.gateway import InProcessGateway, in_process_gateway
from tests.support.mcp import Wiretap, http_client, served

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
  stream_keepalive_s: 0.1
  servers:
    alpha: {{transport: http, url: "{alpha}"}}
  virtual_servers:
    tools: {{servers: [alpha]}}
"""
README = "mcp://alpha/note%3A%2F%2Falpha%2Freadme"
CALLER = {"x-forwarded-user": "erin", "x-forwarded-groups": "engineering"}


class Split:
    """A proxy with no stickiness: GETs to `streams`, everything else to `calls`; it notes
    when the first GET stream opened, and when the replica holding it finished with it."""

    def __init__(self, calls: InProcessGateway, streams: InProcessGateway) -> None:
        self.calls = Wiretap(calls.app)
        self.streams = streams
        self.stream_opened = asyncio.Event()
        self.stream_closed = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (scope["type"] == "http" and scope["method"] == "GET"):
            await self.calls(scope, receive, send)
            return

        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 200:
                self.stream_opened.set()
            await send(message)

        await self.streams.app(scope, receive, watched)
        self.stream_closed.set()  # its audit record is queued by now


@pytest_asyncio.fixture
async def split(tmp_path: Path, alpha: HttpUpstream) -> AsyncIterator[Split]:
    config = CONFIG.format(db=tmp_path / "gw.db", alpha=alpha.url)
    async with in_process_gateway(config) as one, in_process_gateway(config) as other:
        try:
            yield Split(one, other)
        finally:
            await asyncio.gather(one.app.state.mcp.aclose(), other.app.state.mcp.aclose())


async def stream_records(gw: InProcessGateway) -> list[dict[str, Any]]:
    """The records of GET streams that closed (the writer flushed first)."""
    records = await gw.records()
    return [r for r in records if any(d["rule"] == "mcp.notifications" for d in r["decisions"])]


@pytest.mark.asyncio
async def test_a_subscription_made_on_one_replica_reaches_the_stream_on_another(
    split: Split,
) -> None:
    updates: list[str] = []
    heard = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))
            heard.set()

    async with served(split) as base, http_client(CALLER) as http:
        transport = streamable_http_client(f"{base}/mcp/tools", http_client=http)
        async with Client(transport, mode="legacy", message_handler=on_message) as client:
            await client.session.subscribe_resource(README)  # a POST: the other replica
            deadline = asyncio.get_running_loop().time() + 30
            while not heard.is_set():  # the stream's replica reads it at a keep-alive
                await client.call_tool("alpha__touch", {"uri": "note://alpha/readme"})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(heard.wait(), timeout=1.0)
                assert asyncio.get_running_loop().time() < deadline
    assert set(updates) == {README}


@pytest.mark.asyncio
async def test_a_session_ended_on_one_replica_ends_its_stream_on_another(split: Split) -> None:
    async with served(split) as base, http_client(CALLER) as http:
        transport = streamable_http_client(f"{base}/mcp/tools", http_client=http)
        async with Client(transport, mode="legacy") as client:
            await client.list_tools()
            prefix = b"mcp-session-id: "
            (session_id, *_) = [
                line[len(prefix) :].decode() for line in split.calls.sent if line.startswith(prefix)
            ]
            await asyncio.wait_for(split.stream_opened.wait(), timeout=30)
            assert not split.stream_closed.is_set()
            ended = await http.delete(f"{base}/mcp/tools", headers={"mcp-session-id": session_id})
            assert ended.status_code == 200
            # The stream's replica finds the session ended at its next keep-alive and closes
            # the stream, while the client is still connected.
            await asyncio.wait_for(split.stream_closed.wait(), timeout=30)
    (record,) = await stream_records(split.streams)
    assert record["status"] == 200 and record["principal"]["user_id"] == "erin"
