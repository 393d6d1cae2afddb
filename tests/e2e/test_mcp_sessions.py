"""MCP sessions through `raygate up`'s `/mcp/tools` and the Serve proxy: the official `mcp`
client (2025 handshake, which keeps the session id and opens the GET stream itself) hears the
upstream's `tools/list_changed` on its GET stream, and a forged session id is answered 404; in
its default mode (2026, no session) it hears the change on a `subscriptions/listen` stream."""

from __future__ import annotations

import asyncio
import itertools
import os

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ToolsListChanged

from tests.e2e.conftest import Gateway
from tests.servers.mcp_upstream import HttpUpstream

ACCEPT = "application/json, text/event-stream"


@pytest.mark.asyncio
async def test_a_session_hears_the_upstreams_tool_list_change_through_the_gateway(
    gateway: Gateway, mcp_upstream: HttpUpstream
) -> None:
    changed = asyncio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            changed.set()

    headers = {"authorization": f"Bearer {gateway.api_key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(f"{gateway.base_url}/mcp/tools", http_client=http)
        async with Client(transport, mode="legacy", message_handler=on_message) as client:
            # The GET stream opens on its own after initialize, and a change announced before
            # the replica holding it listens upstream is not replayed: grow until one is heard.
            deadline = asyncio.get_running_loop().time() + 60
            for attempt in itertools.count():
                added = f"grown_{attempt}_{os.urandom(3).hex()}"
                await client.call_tool("docs__grow", {"tool": added})
                try:
                    await asyncio.wait_for(changed.wait(), timeout=2.0)
                    break
                except TimeoutError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
            tools = {t.name for t in (await client.list_tools()).tools}
    assert f"docs__{added}" in tools


@pytest.mark.asyncio
async def test_a_listener_hears_the_upstreams_tool_list_change_through_the_gateway(
    gateway: Gateway, mcp_upstream: HttpUpstream
) -> None:
    headers = {"authorization": f"Bearer {gateway.api_key}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(f"{gateway.base_url}/mcp/tools", http_client=http)
        async with Client(transport) as client, client.listen(tools_list_changed=True) as sub:
            events = aiter(sub)
            # A change announced before the replica holding the stream listens upstream is
            # not replayed: grow until one is heard.
            deadline = asyncio.get_running_loop().time() + 60
            for attempt in itertools.count():
                added = f"listened_{attempt}_{os.urandom(3).hex()}"
                await client.call_tool("docs__grow", {"tool": added})
                try:
                    event = await asyncio.wait_for(anext(events), timeout=2.0)
                    break
                except TimeoutError:
                    if asyncio.get_running_loop().time() > deadline:
                        raise
            assert event == ToolsListChanged()
            tools = {t.name for t in (await client.list_tools()).tools}
    assert f"docs__{added}" in tools


def test_a_forged_session_id_is_answered_404(gateway: Gateway) -> None:
    url = f"{gateway.base_url}/mcp/tools"
    headers = {"authorization": f"Bearer {gateway.api_key}", "accept": ACCEPT}
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "e2e", "version": "1"},
        },
    }
    opened = httpx.post(url, json=initialize, headers=headers, timeout=30)
    assert opened.status_code == 200
    session_id = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    version = {"mcp-protocol-version": "2025-06-18"}

    def post(sid: str) -> httpx.Response:
        sent = {**headers, **version, "mcp-session-id": sid}
        return httpx.post(url, json=listing, headers=sent, timeout=30)

    assert post(session_id).status_code == 200
    issued, nonce, mac = session_id.split(".")
    forged = post(f"{issued}.{nonce}.{mac[::-1]}")
    assert forged.status_code == 404
    assert forged.json()["error"]["message"] == "Session not found"
    deleted = httpx.delete(url, headers={**headers, "mcp-session-id": session_id}, timeout=30)
    assert deleted.status_code == 200
    assert post(session_id).status_code == 404  # ended, whichever replica answers
