"""The official `mcp` client through `raygate up`'s `/mcp/tools`, in front of a real MCP
server on loopback (the `mcp_upstream` fixture): aggregation under namespaced names, progress
streamed through the Serve proxy, the caller's groups and policy profile, the gateway's own
upstream credential, and the audit trail."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.conftest import Gateway
from tests.servers.mcp_upstream import HttpUpstream
from tests.servers.oidc_issuer import OidcIssuer

UPSTREAM_TOKEN = "mcp-upstream-secret"  # gateway.yaml's default for the docs upstream


@asynccontextmanager
async def connected(gateway: Gateway, bearer: str) -> AsyncIterator[Client]:
    headers = {"authorization": f"Bearer {bearer}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(f"{gateway.base_url}/mcp/tools", http_client=http)
        async with Client(transport) as client:
            yield client


def text_of(result: types.CallToolResult) -> str:
    return "".join(b.text for b in result.content if isinstance(b, types.TextContent))


def records(gateway: Gateway, **filters: str) -> list[dict[str, Any]]:
    """The audit records matching `filters`, once at least one is committed."""
    deadline = time.monotonic() + 15
    admin = {"authorization": f"Bearer {gateway.admin_key}"}
    while True:
        page = httpx.get(f"{gateway.base_url}/admin/audit/records", params=filters, headers=admin)
        page.raise_for_status()
        found = list(page.json()["records"])
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)  # the writer commits off the request path: poll until it has


@pytest.mark.asyncio
async def test_an_mcp_client_uses_upstream_tools_through_the_gateway(
    gateway: Gateway, oidc_issuer: OidcIssuer, mcp_upstream: HttpUpstream
) -> None:
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with connected(gateway, gateway.api_key) as client:
        tools = {t.name for t in (await client.list_tools()).tools}
        assert {"docs__echo", "docs__whoami", "docs__count"} <= tools
        counted = await client.call_tool("docs__count", {"n": 4}, progress_callback=on_progress)
        assert text_of(counted) == "counted to 4"
        who = json.loads(text_of(await client.call_tool("docs__whoami", {})))
    assert progress == [1, 2, 3, 4]
    assert who["x-user-id"]  # the caller's identity, forwarded as configured
    assert mcp_upstream.received[-1]["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    assert UPSTREAM_TOKEN not in json.dumps(who)

    token = oidc_issuer.mint(
        {"sub": "mcp-carol", "groups": ["contractors"], "email": "carol@corp.example"}
    )
    async with connected(gateway, token) as client:
        assert {t.name for t in (await client.list_tools()).tools} == {
            "docs__echo",
            "docs__count",
        }
        echoed = await client.call_tool("docs__echo", {"text": "mail ana@example.org"})
        assert text_of(echoed) == "docs got: mail [EMAIL_1]"  # the strict profile redacts
        with pytest.raises(MCPError):
            await client.call_tool("docs__whoami", {})

    (denied,) = records(gateway, user="mcp-carol", model="docs__whoami")
    assert denied["error_code"] == "tool_not_allowed"
    assert denied["route"] == "/mcp/tools"
    (allowed,) = records(gateway, user="mcp-carol", model="docs__echo")
    assert allowed["route_taken"] == "mcp:docs/echo"
    assert allowed["status"] == 200 and allowed["error_code"] is None
