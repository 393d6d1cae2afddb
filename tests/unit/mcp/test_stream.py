"""A session's GET stream (`gateway.mcp.stream.relay`) driven as an ASGI app is: each
notification one SSE event, in order; it ends properly when its session ends (a `None` from the
hub), when the session is no longer valid at a keep-alive, when its client falls too far
behind, and stops writing once the client has gone."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mcp.client.subscriptions import ToolsListChanged

from gateway.mcp.notifications import Listener, NotificationHub
from gateway.mcp.stream import relay

CHANGED = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}


class Client:
    """The ASGI side of one GET: what the app sent, and a disconnect the test can trigger."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def events(self) -> list[dict[str, Any]]:
        body = b"".join(m.get("body", b"") for m in self.sent[1:]).decode()
        data = [line[len("data: ") :] for line in body.splitlines() if line.startswith("data: ")]
        return [json.loads(d) for d in data]

    def ended_properly(self) -> bool:
        last = self.sent[-1]
        return last["type"] == "http.response.body" and last.get("more_body") is False


async def always() -> bool:
    return True


@pytest.mark.asyncio
async def test_notifications_are_sent_in_order_until_the_session_ends() -> None:
    hub = NotificationHub({})
    listener = hub.listen("tools", "s-1", frozenset({"alpha"}))
    other = hub.listen("tools", "s-2", frozenset({"beta"}))
    client = Client()
    await hub.publish("alpha", ToolsListChanged())
    await hub.publish("beta", ToolsListChanged())  # not this caller's upstream
    hub.end_session("s-1")
    sent = await relay(
        listener, client.receive, client.send, keepalive_s=30, still_valid=always, headers=[]
    )
    assert sent == 1 and client.events() == [CHANGED]
    start = client.sent[0]
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream") in start["headers"]
    assert client.ended_properly()
    assert other.queue.qsize() == 1  # s-2's stream is not ended by s-1's end


@pytest.mark.asyncio
async def test_a_session_no_longer_valid_ends_the_stream_at_the_next_keepalive() -> None:
    checks: list[bool] = []

    async def valid_once() -> bool:
        checks.append(not checks)
        return checks[-1]

    client = Client()
    listener = Listener("tools", "s-1", frozenset())
    sent = await relay(
        listener, client.receive, client.send, keepalive_s=0.01, still_valid=valid_once, headers=[]
    )
    assert sent == 0 and checks == [True, False]
    assert b": keep-alive" in b"".join(m.get("body", b"") for m in client.sent[1:])
    assert client.ended_properly()


@pytest.mark.asyncio
async def test_a_client_that_went_away_ends_the_stream_without_more_writes() -> None:
    client = Client()
    listener = Listener("tools", "s-1", frozenset())
    client.gone.set()
    sent = await relay(
        listener, client.receive, client.send, keepalive_s=30, still_valid=always, headers=[]
    )
    assert sent == 0
    assert not client.ended_properly()  # nothing written after the disconnect


@pytest.mark.asyncio
async def test_a_client_too_far_behind_has_its_stream_ended() -> None:
    listener = Listener("tools", "s-1", frozenset({"alpha"}), queue=asyncio.Queue(maxsize=3))
    for _ in range(5):
        listener.offer(CHANGED)
    assert listener.overflowed
    client = Client()
    sent = await relay(
        listener, client.receive, client.send, keepalive_s=30, still_valid=always, headers=[]
    )
    assert sent == 2 and client.ended_properly()
