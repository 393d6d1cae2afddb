"""Helpers of the routing tests: providers on the simulator, a fake clock and sleep."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from gateway.protocol.openai import ChatCompletionRequest
from gateway.routing.router import Route, RoutedStream, Router

PROVIDERS = """
providers:
  first: {preset: simulator, base_url: "http://sim/v1"}
  second: {preset: simulator, base_url: "http://sim/v1"}
  third: {preset: simulator, base_url: "http://sim/v1"}
"""

MakeRouter = Callable[..., Awaitable[Router]]


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


async def drain(opening: Awaitable[RoutedStream[Any]]) -> tuple[Route, list[Any]]:
    """The route a router stream was opened on, and every chunk of it."""
    stream = await opening
    return stream.route, [chunk async for chunk in stream.chunks]
