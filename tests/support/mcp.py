"""The official `mcp` client connected to a gateway app in process (over `httpx2`'s ASGI
transport, the HTTP client the SDK uses), and a record of every byte the app sent back.

    async with mcp_client(gw.app, "/mcp/tools", headers) as client:
        await client.list_tools()
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx2
from mcp import Client
from mcp.client.client import ConnectMode
from mcp.client.streamable_http import streamable_http_client
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Wiretap:
    """An ASGI wrapper keeping every response header and body byte the app sent."""

    app: ASGIApp
    sent: list[bytes] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.sent += [k + b": " + v for k, v in message.get("headers", [])]
            elif message["type"] == "http.response.body":
                self.sent.append(bytes(message.get("body", b"")))
            await send(message)

        await self.app(scope, receive, keep)

    def saw(self, text: str) -> bool:
        """Whether `text` appeared anywhere in what the app sent."""
        return text.encode() in b"\n".join(self.sent)


@asynccontextmanager
async def mcp_client(
    app: ASGIApp,
    path: str,
    headers: Mapping[str, str],
    *,
    mode: ConnectMode = "auto",
) -> AsyncIterator[Client]:
    """An entered `mcp.Client` of the MCP endpoint at `path` of `app`."""
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, headers=dict(headers)) as http:
        url = f"http://gw{path}"
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            yield client
