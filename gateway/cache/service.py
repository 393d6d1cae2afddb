"""`CacheService`: the semantic cache as one replica serves it, kept in step with the others.

It owns a `SemanticCache` (the index and entries in memory) and, when a database is
configured, the shared `CacheLog`: inserts go to the log first and take their id from it,
and a background task applies what other replicas appended. Embeddings come from an injected
async `embed` (the batched MiniLM in the Serve deployment, a worker thread in-process), so the
service itself never blocks the event loop on the model.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from gateway.cache.cache import SemanticCache
from gateway.cache.log import CacheLog, LoggedEntry, LogOp
from gateway.cache.lookup import CacheQuery, CacheResult, NewEntry, Selector

log = logging.getLogger(__name__)

AsyncEmbed = Callable[[list[str]], Awaitable[np.ndarray]]

# Delete rows are kept this long, far beyond any running replica's sync lag.
_DELETE_ROWS_KEPT_S = 3600.0
_COMPACT_EVERY_S = 300.0


class CacheService:
    """One cache replica: lookups, inserts and invalidation over the shared entry log."""

    def __init__(
        self,
        cache: SemanticCache,
        embed: AsyncEmbed,
        entry_log: CacheLog | None = None,
        *,
        sync_interval_s: float = 0.2,
    ) -> None:
        self.cache = cache
        self._embed = embed
        self._log = entry_log
        self._sync_interval_s = sync_interval_s
        self._applied = 0  # the last log seq this replica has applied
        self._sync_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_compaction = 0.0

    async def start(self) -> None:
        """Replay the log into memory, then keep applying what other replicas append."""
        await self.sync()
        if self._log is not None and self._task is None:
            self._task = asyncio.create_task(self._follow(), name="cache-log-sync")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings of `texts`, one row each (the policy engine's corpora too)."""
        return await self._embed(texts)

    async def lookup(self, query: CacheQuery) -> CacheResult:
        """The four phases for one request (see `SemanticCache`). A miss first catches up
        with the log (one read), so an answer stored by any replica before the lookup began
        is found here, not only after the next background sync."""
        result = await self._lookup(query)
        if result.hit is None and await self.sync():
            result = await self._lookup(dataclasses.replace(query, embedding=result.embedding))
        return result

    async def _lookup(self, query: CacheQuery) -> CacheResult:
        cache = self.cache
        vector = query.embedding
        hit = cache.lookup_keyed(query.text, query.scope)
        if hit is None and cache.wants_semantic(query.scope, eligible=query.eligible):
            if vector is None:
                vector = (await self._embed([query.text]))[0]
            found = cache.lookup_semantic(
                query.text, query.scope, vector, threshold=query.threshold
            )
            return CacheResult(found.hit, found.similarity, found.rejected, vector)
        return CacheResult(hit, hit.similarity if hit is not None else 0.0, False, vector)

    async def insert(self, entry: NewEntry) -> int:
        """Store an answer: in the log (shared, persistent) and then in this replica."""
        vector = entry.embedding
        if vector is None:
            vector = (await self._embed([entry.text]))[0]
        now = self.cache.clock()
        if self._log is None:
            return self.cache.insert(entry.text, entry.scope, entry.response, embedding=vector)
        logged = LoggedEntry(0, entry.scope, entry.model, entry.text, entry.response, vector, now)
        entry_id = await asyncio.to_thread(self._log.append, logged)
        self.cache.insert(
            entry.text,
            entry.scope,
            entry.response,
            embedding=vector,
            entry_id=entry_id,
            created_at=now,
        )
        return entry_id

    async def invalidate(self, selector: Selector) -> int:
        """Remove the selected entries everywhere; return how many there were."""
        if self._log is None:
            if selector.entry_ids and not (selector.scope or selector.model):
                return self.cache.remove(list(selector.entry_ids))
            raise ValueError("without a database, entries can only be invalidated by id")
        ids = await asyncio.to_thread(self._log.invalidate, selector, self.cache.clock())
        self.cache.remove(ids)
        return len(ids)

    async def sync(self) -> int:
        """Apply every log row this replica has not seen; return how many rows were read."""
        if self._log is None:
            return 0
        entry_log = self._log
        read = 0
        async with self._sync_lock:
            while True:
                ops = await asyncio.to_thread(entry_log.since, self._applied)
                for op in ops:
                    self._apply(op)
                    self._applied = op.seq
                read += len(ops)
                if not ops:
                    break
        return read

    def _apply(self, op: LogOp) -> None:
        if op.op == "delete" and op.deleted is not None:
            self.cache.remove([op.deleted])
            return
        entry = op.entry
        if entry is None or entry.entry_id in self.cache:
            return
        if entry.created_at < self.cache.clock() - self.cache.config.ttl_s:
            return
        self.cache.insert(
            entry.text,
            entry.scope,
            entry.response,
            embedding=entry.vector,
            entry_id=entry.entry_id,
            created_at=entry.created_at,
        )

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._sync_interval_s)
            try:
                await self.sync()
                await self._maybe_compact()
            except Exception:
                # A database blip must not end the follower: the next round catches up.
                log.exception("cache log sync failed; retrying in %.1fs", self._sync_interval_s)

    async def _maybe_compact(self) -> None:
        now = time.monotonic()
        if self._log is None or now - self._last_compaction < _COMPACT_EVERY_S:
            return
        self._last_compaction = now
        wall = self.cache.clock()
        config = self.cache.config
        removed = await asyncio.to_thread(
            self._log.compact,
            expired_before=wall - config.ttl_s,
            keep=config.max_entries,
            deletes_before=wall - _DELETE_ROWS_KEPT_S,
        )
        if removed:
            log.info("cache log compacted: %d rows removed", removed)

    async def stats(self) -> dict[str, object]:
        """Counters since this replica started, and its size."""
        s = self.cache.stats
        return {
            "entries": len(self.cache),
            "hits": dict(s.hits),
            "misses": s.misses,
            "rejected_by_verification": s.rejected_by_verification,
            "ineligible": s.ineligible,
            "evicted": s.evicted,
            "expired": s.expired,
            "applied_seq": self._applied,
        }
