"""The official `mcp` client connected to a gateway app in process (over `httpx2`'s ASGI
transport, the HTTP client the SDK uses), and a record of every byte the app sent back.

    async with mcp_client(gw.app, "/mcp/tools", headers) as client:
        await client.list_tools()

The ASGI transport hands the client a response only once it is complete, so a stream that
stays open (a session's GET stream) needs a real server: `served(app)` runs the app under
uvicorn on a loopback port, in the test's own event loop.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx2
import uvicorn
from mcp import Client
from mcp.client.client import ConnectMode
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
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
    **options: Any,
) -> AsyncIterator[Client]:
    """An entered `mcp.Client` of the MCP endpoint at `path` of `app`; `options` are the
    `Client`'s (e.g. `message_handler`)."""
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, headers=dict(headers)) as http:
        url = f"http://gw{path}"
        transport_streams = streamable_http_client(url, http_client=http)
        async with Client(transport_streams, mode=mode, **options) as client:
            yield client


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """`app` served over HTTP on a free loopback port until the block ends; yields its base
    URL. The socket listens before the block starts, so no request can come too early."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)
        sock.close()


def http_client(headers: Mapping[str, str]) -> httpx2.AsyncClient:
    """An HTTP client for the official MCP client against a `served` app, with the SDK's own
    timeouts (30 s to connect or write, 300 s between reads), as a real MCP client has.

    Not httpx's default of 5 s between reads: the SDK client reads a POST's response as an SSE
    stream whose headers come at once and whose one event (the answer) comes when the gateway
    has it, and it reports any error while reading that stream, a read timeout included, as
    "SSE stream ended without a response". A gateway's first `tools/list` opens a session to
    every upstream (a stdio child process among them): seconds on a loaded machine, past 5 s
    in a busy CI run. A session's GET stream, quiet between keep-alives (15 s by default),
    would time out too, and the SDK gives it up after two such failures in a row. The gateway's
    own upstream deadlines bound every answer.
    """
    return create_mcp_http_client(headers=dict(headers))
