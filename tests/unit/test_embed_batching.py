"""EmbedBatcher: a lone text runs at once; texts that arrive during a batch share the next."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

from gateway.cache.batching import EmbedBatcher

DEADLINE_S = 10
pytestmark = pytest.mark.asyncio


class GatedEmbedder:
    """Records each batch; the first batch blocks until `release` is set."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.batches.append(list(texts))
        self.entered.set()
        assert self.release.wait(DEADLINE_S)
        if self.fail_on in texts:
            raise RuntimeError("embedder failed")
        return np.array([[float(len(t)), float(ord(t[0]))] for t in texts])


async def _queued(batcher: EmbedBatcher, count: int) -> None:
    """Yield to the loop until `count` texts wait for a batch (no clock involved)."""
    for _ in range(1000):
        if batcher.queued == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{batcher.queued} texts queued, expected {count}")


async def _busy_then(
    batcher: EmbedBatcher, embedder: GatedEmbedder, texts: list[str]
) -> tuple[asyncio.Task[np.ndarray], list[asyncio.Task[np.ndarray]]]:
    """Start one batch with "a", queue `texts` behind it while it runs, then let it go."""
    first = asyncio.create_task(batcher.embed("a"))
    assert await asyncio.to_thread(embedder.entered.wait, DEADLINE_S)
    rest = [asyncio.create_task(batcher.embed(t)) for t in texts]
    await _queued(batcher, len(texts))
    embedder.release.set()
    return first, rest


async def test_a_lone_text_is_embedded_alone_and_at_once() -> None:
    embedder = GatedEmbedder()
    embedder.release.set()
    vector = await EmbedBatcher(embedder, max_batch_size=32).embed("hello")
    assert embedder.batches == [["hello"]]
    assert vector.tolist() == [5.0, float(ord("h"))]


async def test_texts_arriving_during_a_batch_share_the_next_one() -> None:
    embedder = GatedEmbedder()
    batcher = EmbedBatcher(embedder, max_batch_size=32)
    first, rest = await _busy_then(batcher, embedder, ["bb", "ccc", "dddd"])
    assert (await first).tolist() == [1.0, float(ord("a"))]
    vectors = await asyncio.gather(*rest)
    assert embedder.batches == [["a"], ["bb", "ccc", "dddd"]]
    assert [v[0] for v in vectors] == [2.0, 3.0, 4.0]  # each caller gets its own row


async def test_a_batch_holds_at_most_max_batch_size_texts() -> None:
    embedder = GatedEmbedder()
    batcher = EmbedBatcher(embedder, max_batch_size=2)
    first, rest = await _busy_then(batcher, embedder, ["b", "c", "d"])
    await asyncio.gather(first, *rest)
    assert embedder.batches == [["a"], ["b", "c"], ["d"]]


async def test_an_embedder_error_reaches_every_caller_in_its_batch_and_the_next_runs() -> None:
    embedder = GatedEmbedder(fail_on="c")
    batcher = EmbedBatcher(embedder, max_batch_size=2)
    first, rest = await _busy_then(batcher, embedder, ["b", "c", "d"])
    await first
    for task in rest[:2]:
        with pytest.raises(RuntimeError, match="embedder failed"):
            await task
    assert (await rest[2]).tolist() == [1.0, float(ord("d"))]


async def test_a_caller_that_went_away_is_left_out_of_the_batch() -> None:
    embedder = GatedEmbedder()
    batcher = EmbedBatcher(embedder, max_batch_size=32)
    first, rest = await _busy_then(batcher, embedder, ["b", "c", "d"])
    rest[1].cancel()
    await asyncio.gather(first, rest[0], rest[2])
    assert embedder.batches == [["a"], ["b", "d"]]
