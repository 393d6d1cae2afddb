"""Stream coalescing: the first chunk at once, the rest merged per interval, the end never
held back, errors after what came before them, and an early close reaching the source."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from gateway.errors import UpstreamError
from gateway.providers.local import LocalUsage
from local_models.coalesce import Delta, Step, coalesce, merge_steps

DEADLINE_S = 30.0
LONG_S = 3600.0  # an interval no test waits out: holding a chunk for it fails the deadline


def joined(parts: Sequence[str]) -> str:
    return "".join(parts)


async def taken(stream: AsyncIterator[str]) -> list[str]:
    return [item async for item in stream]


async def gated(first: str, gate: asyncio.Event, *rest: str) -> AsyncIterator[str]:
    """`first`, then (once `gate` is set) the rest."""
    yield first
    await gate.wait()
    for item in rest:
        yield item


@pytest.mark.asyncio
async def test_without_an_interval_every_chunk_passes_as_it_is() -> None:
    async def source() -> AsyncIterator[str]:
        for item in "abcde":
            yield item

    assert await taken(coalesce(source(), 0, joined)) == list("abcde")


@pytest.mark.asyncio
async def test_the_first_chunk_passes_at_once_and_the_rest_merge() -> None:
    gate = asyncio.Event()
    stream = coalesce(gated("a", gate, "b", "c", "d"), LONG_S, joined)
    first = await asyncio.wait_for(anext(stream), DEADLINE_S)  # not held for the interval
    gate.set()
    rest = await asyncio.wait_for(taken(stream), DEADLINE_S)  # the end is not held either
    assert (first, rest) == ("a", ["bcd"])


@pytest.mark.asyncio
async def test_an_error_comes_after_the_chunks_before_it() -> None:
    async def failing() -> AsyncIterator[str]:
        yield "a"
        yield "b"
        raise UpstreamError("engine failed")

    received: list[str] = []
    with pytest.raises(UpstreamError, match="engine failed"):
        async for item in coalesce(failing(), LONG_S, joined):
            received.append(item)
    assert joined(received) == "ab"


@pytest.mark.asyncio
async def test_closing_early_stops_reading_the_source() -> None:
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[str]:
        try:
            yield "a"
            await asyncio.Event().wait()
        finally:
            closed.set()

    stream = coalesce(endless(), LONG_S, joined)
    assert await asyncio.wait_for(anext(stream), DEADLINE_S) == "a"
    await stream.aclose()
    await asyncio.wait_for(closed.wait(), DEADLINE_S)


def usage(tokens: int) -> LocalUsage:
    return LocalUsage(
        prompt_tokens=5, completion_tokens=tokens, total_tokens=5 + tokens, device="cpu"
    )


def test_merged_steps_join_each_choice_and_keep_the_last_usage() -> None:
    steps = [
        Step((Delta(0, "Hel", None), Delta(1, "Bon", None)), False, usage(2)),
        Step((Delta(0, "lo", "stop"), Delta(1, "jour", None)), False, usage(4)),
        Step((Delta(1, "!", "length"),), True, usage(5)),
    ]
    merged = merge_steps(steps)
    assert merged.deltas == (Delta(0, "Hello", "stop"), Delta(1, "Bonjour!", "length"))
    assert merged.finished and merged.usage.completion_tokens == 5
