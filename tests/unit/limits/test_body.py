"""A request body is read within a size and a time limit: a slow-body client (slowloris) gets
408 instead of holding a request slot for as long as it likes. Issue #13, finding 9.

Served by uvicorn, as Ray Serve's proxy serves the ingress, and driven over a raw socket: a
client that sends its headers and part of its body, then nothing more.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError, RequestTimeout
from gateway.limits.body import read_body

LIMIT = 1000
TIMEOUT_S = 0.3


async def _echo(request: Request) -> Response:
    try:
        body = await read_body(
            request.stream(),
            limit=LIMIT,
            timeout_s=TIMEOUT_S,
            declared_length=request.headers.get("content-length"),
        )
    except GatewayError as exc:
        return JSONResponse(exc.to_body(), status_code=exc.status)
    return JSONResponse({"size": len(body)})


@pytest_asyncio.fixture
async def server() -> AsyncIterator[int]:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    # Listening before uvicorn starts: connections wait in the backlog, no readiness poll.
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan="off", log_config=None)
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve(sockets=[sock]))
    yield int(sock.getsockname()[1])
    running.should_exit = True
    await task


async def _exchange(port: int, head: bytes, body: bytes) -> tuple[int, dict[str, object]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    async with asyncio.timeout(30):  # a deadline for a broken test, far beyond TIMEOUT_S
        status_line = await reader.readline()
        headers = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in headers.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        payload = await reader.readexactly(length)
    writer.close()
    return int(status_line.split()[1]), json.loads(payload)


def _head(length: int) -> bytes:
    return (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {length}\r\n\r\n".encode()
    )


@pytest.mark.asyncio
async def test_a_body_that_stops_arriving_gets_408(server: int) -> None:
    status, body = await _exchange(server, _head(500), b"x" * 10)  # 490 bytes never come
    assert status == 408
    assert body["error"]["code"] == "request_timeout"  # type: ignore[index]


@pytest.mark.asyncio
async def test_a_whole_body_is_read(server: int) -> None:
    assert await _exchange(server, _head(500), b"x" * 500) == (200, {"size": 500})


@pytest.mark.asyncio
async def test_a_declared_body_over_the_limit_is_refused_unread(server: int) -> None:
    status, _ = await _exchange(server, _head(LIMIT + 1), b"")
    assert status == 413


@pytest.mark.asyncio
async def test_a_trickle_that_would_never_end_is_cut_at_the_deadline() -> None:
    never = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b"{"
        await never.wait()  # the client keeps the connection and sends nothing
        yield b"}"

    with pytest.raises(RequestTimeout):
        await read_body(trickle(), limit=LIMIT, timeout_s=0.05)
