"""Stream coalescing: fewer, larger chunks from an engine that makes one token per step.

Every chunk a local model yields crosses three more processes (router, ingress, proxy) as its
own object, so at one token per chunk the hops, not the engine, bound a stream's tokens/s.
`coalesce` passes the first chunk on at once (time to first token is untouched) and after
that at most one merged chunk per interval: whatever the engine made in between, merged by the
caller's `merge`. The end of the stream is passed on at once, never held for the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from gateway.providers.local import LocalUsage

T = TypeVar("T")


async def coalesce(
    source: AsyncIterator[T], interval_s: float, merge: Callable[[Sequence[T]], T]
) -> AsyncGenerator[T, None]:
    """`source`, with what arrives within `interval_s` of the last chunk sent merged into one.

    An error from `source` is raised after the chunks that came before it; closing this
    iterator early cancels the reading of `source` (so the engine aborts the request).
    `interval_s <= 0` passes every chunk on as it is.
    """
    if interval_s <= 0:
        async for item in source:
            yield item
        return
    queue: list[T] = []
    arrived = asyncio.Event()  # something is queued, or the source has ended
    ended = asyncio.Event()
    failure: list[Exception] = []

    async def pump() -> None:
        try:
            async for item in source:
                queue.append(item)
                arrived.set()
        except Exception as exc:  # raised to the reader after what came before it
            failure.append(exc)
        finally:
            ended.set()
            arrived.set()

    reader = asyncio.create_task(pump())
    loop = asyncio.get_running_loop()
    next_send = loop.time()
    try:
        while True:
            await arrived.wait()
            if (wait := next_send - loop.time()) > 0 and not ended.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(ended.wait(), wait)
            batch, queue[:] = list(queue), []
            arrived.clear()
            if batch:
                yield merge(batch) if len(batch) > 1 else batch[0]
                next_send = loop.time() + interval_s
            if ended.is_set() and not queue:
                break
        if failure:
            raise failure[0]
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


@dataclass(frozen=True)
class Delta:
    """What one choice gained in one engine step (or several merged)."""

    index: int
    text: str
    finish_reason: str | None


@dataclass(frozen=True)
class Step:
    """One engine step of a streamed request (or several merged): the choices' deltas, whether
    the request finished, and its usage so far."""

    deltas: tuple[Delta, ...]
    finished: bool
    usage: LocalUsage


def merge_steps(steps: Sequence[Step]) -> Step:
    """Consecutive steps as one: each choice's text joined in order, its last finish reason,
    and the last step's usage (usage is cumulative)."""
    texts: dict[int, list[str]] = {}
    reasons: dict[int, str | None] = {}
    for step in steps:
        for delta in step.deltas:
            texts.setdefault(delta.index, []).append(delta.text)
            reasons[delta.index] = delta.finish_reason or reasons.get(delta.index)
    deltas = tuple(Delta(i, "".join(parts), reasons[i]) for i, parts in texts.items())
    return Step(deltas, steps[-1].finished, steps[-1].usage)
