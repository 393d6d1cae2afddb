"""A small real MCP server (the official SDK's `MCPServer`) that the MCP gateway's tests put
behind the gateway: over Streamable HTTP on a free loopback port (`serve_http`), or as a stdio
child process (`python -m tests.servers.mcp_upstream NAME`).

Its tools tell a test what reached the upstream: `echo` returns the arguments it received,
`whoami` the identity headers of the request, `count` reports progress before it answers;
`contact` answers with an e-mail address (for the output policy), `explode` fails as a tool
error, `sleep` takes its time, `pid` names the process, `grow` adds a tool at run time
(announced with `notifications/tools/list_changed`) and `touch` announces that a resource
changed (`notifications/resources/updated`). It has two resources (`readme`,
and `owner`, which holds an e-mail address) and one prompt. The headers each `echo` and
`whoami` call carried are kept for the test to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

CONTACT = "The owner is ana.lima@example.org, call her."
IDENTITY_HEADERS = ("authorization", "x-user-id", "x-user-email", "x-user-groups")


def build(name: str, received: list[dict[str, str]] | None = None) -> MCPServer:
    """An upstream named `name` (resources `note://{name}/readme` and `note://{name}/owner`);
    the headers of each `echo` and `whoami` call are appended to `received`."""
    server = MCPServer(name)

    def note(ctx: Context) -> dict[str, str]:
        headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
        if received is not None:
            received.append(headers)
        return headers

    @server.tool(description="Return the text it received.")
    def echo(text: str, ctx: Context) -> str:
        note(ctx)
        return f"{name} got: {text}"

    @server.tool(description="The caller identity headers this request carried.")
    def whoami(ctx: Context) -> str:
        headers = note(ctx)
        return json.dumps({h: headers.get(h) for h in IDENTITY_HEADERS if h != "authorization"})

    @server.tool(description="This server's process id.")
    def pid() -> int:
        return os.getpid()

    @server.tool(description="Count to n, reporting progress at each step.")
    async def count(n: int, ctx: Context) -> str:
        for i in range(1, n + 1):
            await ctx.report_progress(i, n, f"step {i}")
        return f"counted to {n}"

    @server.tool(description="Who to contact.")
    def contact() -> str:
        return CONTACT

    @server.tool(description="Always fails.")
    def explode() -> str:
        raise ToolError("the upstream tool failed")

    @server.tool(description="Answers after `seconds`.")
    async def sleep(seconds: float) -> str:
        await asyncio.sleep(seconds)
        return "awake"

    @server.tool(description="Add the tool `tool` (it answers `grown`) and announce the change.")
    async def grow(tool: str, ctx: Context) -> str:
        def grown() -> str:
            return "grown"

        server.add_tool(grown, name=tool, description="Added at run time.")
        await ctx.notify_tools_changed()  # to every session listening for change events
        return f"added {tool}"

    @server.tool(description="Announce that the resource `uri` changed.")
    async def touch(uri: str, ctx: Context) -> str:
        await ctx.notify_resource_updated(uri)  # to every session listening for that URI
        return f"touched {uri}"

    @server.resource(f"note://{name}/readme", description="A note.")
    def readme() -> str:
        return f"readme of {name}"

    @server.resource(f"note://{name}/owner", description="Who owns this server.")
    def owner() -> str:
        return CONTACT

    @server.prompt(description="A greeting.")
    def greet(person: str) -> str:
        return f"Say hello to {person} from {name}."

    return server


@dataclass
class HttpUpstream:
    """A running upstream: its MCP endpoint URL, and the headers its calls carried."""

    url: str
    name: str
    received: list[dict[str, str]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_http(name: str, *, stateless: bool = False) -> Iterator[HttpUpstream]:
    """Serve the upstream `name` over Streamable HTTP on a free loopback port, in a thread
    with its own event loop, until the block ends."""
    received: list[dict[str, str]] = []
    app = build(name, received).streamable_http_app(stateless_http=stateless)
    with serve_asgi(app, name) as base:
        yield HttpUpstream(f"{base}/mcp", name, received)


@contextlib.contextmanager
def serve_asgi(app: Any, name: str) -> Iterator[str]:
    """Serve an ASGI app on a free loopback port in a thread; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"mcp-upstream-{name}", daemon=True)
    thread.start()
    try:
        deadline = 20.0
        waited = threading.Event()
        while not server.started and deadline > 0:  # uvicorn offers no event to wait on
            if not thread.is_alive():
                raise RuntimeError(f"MCP upstream {name} did not start")
            waited.wait(0.02)
            deadline -= 0.02
        if not server.started:
            raise RuntimeError(f"MCP upstream {name} did not start within 20 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


if __name__ == "__main__":
    build(sys.argv[1] if len(sys.argv) > 1 else "local").run("stdio")
