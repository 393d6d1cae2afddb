"""A client's standalone SSE stream (`GET /mcp/{virtual_server}` with its session id): the
notifications its listener receives, each as one `message` event, until the client goes, the
session ends or expires, or the replica shuts down.

A keep-alive comment goes out every `keepalive_s` when nothing else did (proxies and load
balancers close a silent connection), and the session is checked again then, so that a session
ended on another replica, or expired, ends this stream within `keepalive_s`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from starlette.types import Receive, Send

from gateway.mcp.notifications import Listener, Notification

HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache, no-transform"),
    (b"x-accel-buffering", b"no"),  # nginx: do not hold events back
]


async def relay(
    listener: Listener,
    receive: Receive,
    send: Send,
    *,
    keepalive_s: float,
    still_valid: Callable[[], Awaitable[bool]],
    headers: list[tuple[bytes, bytes]],
) -> int:
    """Serve the stream (see the module docstring); the number of notifications sent."""
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS + headers})
    await send({"type": "http.response.body", "body": b": stream open\n\n", "more_body": True})
    sent = 0
    gone = asyncio.create_task(_disconnected(receive))
    try:
        while True:
            item = asyncio.create_task(listener.queue.get())
            done, _ = await asyncio.wait(
                {item, gone}, timeout=keepalive_s, return_when=asyncio.FIRST_COMPLETED
            )
            if item not in done:
                item.cancel()
                if gone in done or not await still_valid():
                    break
                await _write(send, b": keep-alive\n\n")
                continue
            notification = item.result()
            if notification is None:
                break
            await _write(send, _event(notification))
            sent += 1
        if not gone.done():  # the client is still there: end the response properly
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        gone.cancel()
    return sent


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _write(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _event(notification: Notification) -> bytes:
    return f"event: message\ndata: {json.dumps(notification)}\n\n".encode()
