"""One forward pass for the texts that arrive while the embedder is busy.

Serve's `@serve.batch` waits `batch_wait_timeout_s` after a batch's first text for others to
join it, so a lone lookup always paid that wait (2 ms by default); with no wait, it starts a
batch for each arrival and under load every text ran alone. `EmbedBatcher` starts a batch
the moment the embedder is free and gives it every text queued by then (at most
`max_batch_size`): a lone text waits for nothing, and under load a batch is what arrived
while the one before it ran (continuous batching, as text-embeddings servers do).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

Embed = Callable[[list[str]], np.ndarray]
"""Texts -> one row per text (the blocking embedder; it runs in a worker thread)."""


class EmbedBatcher:
    """Embeds single texts in batches; one batch runs at a time."""

    def __init__(self, embed: Embed, max_batch_size: int, wait_s: float = 0.0) -> None:
        self._embed = embed
        self.max_batch_size = max_batch_size
        self.wait_s = wait_s  # an extra wait for company before a batch that is not full
        self._queue: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._worker: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Texts waiting for a batch to start."""
        return len(self._queue)

    async def embed(self, text: str) -> np.ndarray:
        """`text`'s embedding, computed in the next batch to start."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.append((text, future))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        while self._queue:
            if self.wait_s and len(self._queue) < self.max_batch_size:
                await asyncio.sleep(self.wait_s)
            batch = self._queue[: self.max_batch_size]
            del self._queue[: self.max_batch_size]
            batch = [(text, future) for text, future in batch if not future.done()]
            if not batch:  # every caller in it went away
                continue
            try:
                vectors = await asyncio.to_thread(self._embed, [text for text, _ in batch])
            except Exception as error:  # each caller gets the embedder's error, none hangs
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), vector in zip(batch, vectors, strict=True):
                if not future.done():
                    future.set_result(vector)
