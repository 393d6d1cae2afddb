"""The near cache: exact hits answered inside the ingress replica, with no hop to a cache replica.

An exact repeat is the commonest hit and the cheapest to find; through Serve, most of what it
costs is the handle call to a cache replica and back. Each ingress replica keeps the exact
hits the cache replicas served it in a bounded map keyed as the cache's exact phase keys
(`keys.exact_key`, least recently used out first) and answers a later identical request
itself. Misses' answers are not kept here: an answer enters once a cache replica served it.

Staying as right as the cache replicas:
- Every `sync_interval_s` a background task reads the entry log's inserts and deletes since
  the last read (`CacheLog.key_changes`: exact keys and entry ids, no texts), and drops an
  entry that was invalidated (from any replica or the CLI) or replaced by a newer answer
  under the same key. While that read has failed for five intervals (at least a second), the
  near cache answers nothing.
- A hit is kept only when no change this near cache has read and the replica that served it
  had not yet applied (past `CacheResult.applied`) deletes that entry or stores a newer answer
  under its key: a lagging replica's answer may be one the near cache already saw removed.
  Whatever changes later is read later.
- An entry leaves at the cache's `ttl_s` after it was stored, as on the replicas.
- Hits answered here reach a cache replica every few seconds (`count_nearby`), which counts
  them as its own exact hits: the learned phase's lookups, entries' recency,
  `raygate_cache_lookups{phase="exact"}`.

Legacy completions and embeddings (exact-only, keyed byte for byte) are kept the same way.
An answer longer than 64 KB (a batch of embeddings) is not kept: at most `near_entries` of
64 KB bound the memory it takes. Not covered: an entry a cache replica evicts for space
(`max_entries`) stays here until its TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gateway.cache.candidates import kind_of
from gateway.cache.config import CacheConfig
from gateway.cache.keys import exact_key
from gateway.cache.log import CacheLog, KeyChange
from gateway.cache.lookup import CacheQuery, CacheResult, Hit, NearbyHits
from gateway.tasks import cancelled

log = logging.getLogger(__name__)

REPLICA = "ingress"  # what `x-raygate-cache-replica` says of a hit answered here
_REPORT_EVERY_S = 2.0
_STALE_AFTER_INTERVALS = 5
_MAX_KEPT_CHARS = 65536
_RECENT_CHANGES = 4096


@dataclass
class _Kept:
    hit: Hit
    expires_at: float


class NearCache:
    """Exact hits kept in this ingress replica, following the entry log (see the module)."""

    def __init__(
        self,
        config: CacheConfig,
        entry_log: CacheLog,
        report: Callable[[NearbyHits], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """`report` is the cache backend's `count_nearby` (awaited)."""
        self._capacity = config.near_entries
        self._ttl_s = config.ttl_s
        self._interval_s = config.sync_interval_s
        self._stale_after_s = max(1.0, _STALE_AFTER_INTERVALS * config.sync_interval_s)
        self._log = entry_log
        self._report = report
        self._clock = clock
        self._monotonic = monotonic
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._keys: dict[int, str] = {}  # entry id -> its key here
        self._read = 0  # the last log seq read
        # The changes read last, to tell whether a lagging replica's hit is still current;
        # `_forgotten`: the newest change no longer held (or, at start, the log's end).
        self._recent: deque[KeyChange] = deque()
        self._forgotten = 0
        self._read_at: float | None = None  # monotonic time of the last successful read
        self._lookups: Counter[tuple[str, str]] = Counter()  # served here, not yet reported
        self._used: set[int] = set()
        self._exact_only = 0
        self._reported_at = 0.0
        self._task: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._kept)

    # --- the request path ----------------------------------------------------------------

    def lookup(self, query: CacheQuery) -> CacheResult | None:
        """The exact hit kept for `query`, or None (ask a cache replica)."""
        if not self.fresh():
            return None
        key = _key(query)
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.expires_at <= self._clock():
            self._drop(key)
            return None
        self._kept.move_to_end(key)
        if query.exact_only:  # not a lookup the learned phase counts (as on a replica)
            self._exact_only += 1
        else:
            self._lookups[(query.model, kind_of(query.context))] += 1
        self._used.add(kept.hit.entry_id)
        return CacheResult(kept.hit, 1.0, replica=REPLICA)

    def keep(self, query: CacheQuery, result: CacheResult) -> None:
        """Keep a cache replica's exact hit for `query`, when it is known to be current."""
        hit = result.hit
        if (
            self._capacity == 0
            or hit is None
            or hit.phase != "exact"
            or len(hit.response) > _MAX_KEPT_CHARS
            or not self.fresh()
        ):
            return
        expires_at = hit.created_at + self._ttl_s
        key = _key(query)
        if expires_at <= self._clock() or self._overtaken(hit.entry_id, key, result.applied):
            return
        self._drop(key)
        self._kept[key] = _Kept(hit, expires_at)
        self._keys[hit.entry_id] = key
        while len(self._kept) > self._capacity:
            self._drop(next(iter(self._kept)))

    def _overtaken(self, entry_id: int, key: str, applied: int) -> bool:
        """Whether a change read here that the replica had not applied (past `applied`)
        deletes the entry or stores a newer one under its key; True when not known."""
        if applied >= self._read:
            return False
        if applied < self._forgotten:  # changes it may not know of are no longer held
            return True
        for change in self._recent:
            if change.seq <= applied:
                continue
            deleted = change.key is None and change.entry_id == entry_id
            if deleted or (change.key == key and change.entry_id != entry_id):
                return True
        return False

    def fresh(self) -> bool:
        """Whether the log was read recently enough for kept hits to be served."""
        read_at = self._read_at
        return read_at is not None and self._monotonic() - read_at <= self._stale_after_s

    # --- following the log ---------------------------------------------------------------

    async def start(self) -> None:
        """Start from the log's end (nothing is kept yet), then follow it."""
        self._read = self._forgotten = await asyncio.to_thread(self._log.last_seq)
        self._read_at = self._monotonic()
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="near-cache")

    async def sync(self) -> int:
        """Apply the log's inserts and deletes since the last read; return how many."""
        applied = 0
        while True:
            changes = await asyncio.to_thread(self._log.key_changes, self._read)
            for change in changes:
                self._apply(change)
                self._read = change.seq
                self._recent.append(change)
                if len(self._recent) > _RECENT_CHANGES:
                    self._forgotten = self._recent.popleft().seq
            applied += len(changes)
            if not changes:
                break
        self._read_at = self._monotonic()
        return applied

    def _apply(self, change: KeyChange) -> None:
        if change.key is None:  # a delete
            key = self._keys.get(change.entry_id)
            if key is not None:
                self._drop(key)
            return
        kept = self._kept.get(change.key)
        if kept is not None and kept.hit.entry_id != change.entry_id:
            self._drop(change.key)  # a newer answer replaced it

    def _drop(self, key: str) -> None:
        kept = self._kept.pop(key, None)
        if kept is not None and self._keys.get(kept.hit.entry_id) == key:
            del self._keys[kept.hit.entry_id]

    async def report(self) -> None:
        """Send the hits answered here since the last report to a cache replica."""
        self._reported_at = self._monotonic()
        if not self._used:
            return
        lookups, used, exact_only = self._lookups, self._used, self._exact_only
        self._lookups, self._used, self._exact_only = Counter(), set(), 0
        hits = NearbyHits(
            tuple((model, kind, n) for (model, kind), n in lookups.items()),
            tuple(used),
            exact_only,
        )
        try:
            await self._report(hits)
        except Exception:
            self._lookups.update(lookups)  # sent with the next report
            self._used |= used
            self._exact_only += exact_only
            raise

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.sync()
                if self._monotonic() - self._reported_at >= _REPORT_EVERY_S:
                    await self.report()
            except Exception:
                # Past a few intervals the near cache stops answering (`fresh`) until a read
                # succeeds; the cache replicas answer meanwhile.
                log.warning("near cache: reading the entry log failed; retrying", exc_info=True)

    async def aclose(self) -> None:
        """Stop following the log and report what was served here (replica shutdown)."""
        task, self._task = self._task, None
        await cancelled(task)
        try:
            await self.report()
        except Exception:
            log.warning("near cache: the last hit counts were not reported", exc_info=True)


def _key(query: CacheQuery) -> str:
    """The exact phase's key of `query` (byte for byte on exact-only routes)."""
    return exact_key(query.scope, query.text, query.context, raw=query.exact_only)
