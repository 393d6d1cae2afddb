"""Helpers of the routing tests: the in-process simulator, a fake clock and sleep."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from gateway.protocol.openai import ChatCompletionRequest
from gateway.routing.router import Route, Router
from gateway.simulator import SimulatorSettings, create_app

PROVIDERS = """
providers:
  first: {preset: simulator, base_url: "http://sim/v1"}
  second: {preset: simulator, base_url: "http://sim/v1"}
  third: {preset: simulator, base_url: "http://sim/v1"}
"""

MakeRouter = Callable[..., Awaitable[Router]]


class Sim:
    """The simulator app in-process (`httpx.ASGITransport`), with its control API."""

    def __init__(self) -> None:
        self.transport = httpx.ASGITransport(app=create_app(SimulatorSettings(seed=1)))
        self.control = httpx.AsyncClient(transport=self.transport, base_url="http://sim")

    async def fault(self, **fault: Any) -> None:
        """Queue one fault (see gateway.simulator.faults.Fault)."""
        (await self.control.post("/_sim/faults", json={"faults": [fault]})).raise_for_status()

    async def clear_faults(self) -> None:
        """Drop every queued fault."""
        (await self.control.delete("/_sim/faults")).raise_for_status()

    async def models_asked(self) -> list[str]:
        """The model of every completion request the simulator received, oldest first."""
        requests = (await self.control.get("/_sim/requests")).json()["requests"]
        return [r["json"]["model"] for r in requests if r["json"]]


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """An `asyncio.sleep` stand-in: notes each requested wait and moves the clock by it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


def chat(model: str, **extra: Any) -> ChatCompletionRequest:
    """A one-message chat request for `model`."""
    return ChatCompletionRequest(
        model=model, messages=[{"role": "user", "content": "hello"}], **extra
    )


async def drain(items: AsyncIterator[Any]) -> tuple[Route, list[Any]]:
    """The route a router stream starts with, and every chunk after it."""
    route = await anext(items)
    assert isinstance(route, Route)
    return route, [item async for item in items]
