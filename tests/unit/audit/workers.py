"""Code that runs in child processes of the concurrency tests (importable under `spawn`)."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.audit import AuditStore, AuditWriter
from tests.unit.audit.factory import make_record


def write_through_a_writer(url: str, worker: int, count: int, start: Any) -> None:
    """One gateway replica: its own store and writer, appending `count` records to `url`."""
    store = AuditStore.open(url)  # every replica migrates at start, concurrently too
    start.wait(120)  # a barrier: every replica is ready before any appends

    async def serve() -> None:
        # Batch sizes differ per worker so that batches interleave unevenly.
        writer = AuditWriter(store, batch_size=5 + 7 * worker, flush_interval_s=0)
        for n in range(count):
            await writer.record(make_record(n, request_id=f"w{worker}-{n}"))
        await writer.aclose()

    asyncio.run(serve())
