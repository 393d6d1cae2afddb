"""`CacheService`: the semantic cache as one replica serves it, kept in step with the others.

It owns a `SemanticCache` (the index, entries and learned state in memory) and, when a
database is configured, the shared `CacheLog`: inserts and observations go to the log first
and take their seq from it, and a background task applies what other replicas appended.
Embeddings come from an injected async `embed` (the batched MiniLM in the Serve deployment, a
worker thread in-process), so the service itself never blocks the event loop on the model.

The learned phase's loop: `lookup` may return an `Exploration` instead of a hit; the request
path answers upstream and later calls `observe` with the fresh answer, which is compared with
the stored one (`Comparator`) and logged. Each `insert` also compares the new answer with its
stored neighbours' answers: free observations that need no upstream call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable

import numpy as np

from gateway.cache.budget import HourlyBudget
from gateway.cache.cache import SemanticCache
from gateway.cache.candidates import Neighbour
from gateway.cache.comparator import Comparator
from gateway.cache.equivalence import answer_text, answer_tokens
from gateway.cache.keys import exact_key
from gateway.cache.log import CacheLog, LoggedEntry, LoggedObservation, LogOp, TrafficBatch
from gateway.cache.lookup import (
    CacheQuery,
    CacheResult,
    Exploration,
    NearbyHits,
    NewEntry,
    Observation,
    Selector,
)
from gateway.cache.precache import FollowUp, suggest_follow_ups
from gateway.cache.request import CacheRequest
from gateway.tasks import cancelled

log = logging.getLogger(__name__)

AsyncEmbed = Callable[[list[str]], Awaitable[np.ndarray]]

# Delete rows are kept this long, far beyond any running replica's sync lag.
_DELETE_ROWS_KEPT_S = 3600.0
_COMPACT_EVERY_S = 300.0
# A shadow call stands for 1 / (its probability) served candidates, at most this many.
_MAX_SHADOW_WEIGHT = 20.0
# How often a replica ships its traffic counts; decisions lag the traffic by about this.
_TRAFFIC_FLUSH_S = 5.0


# Inserts whose answers are still being embedded after they returned. Past this many, an
# insert waits for its own, as before: under sustained load the work behind the responses
# must not pile up (it would go on long after the load, and grow without bound).
SETTLING_AT_MOST = 16


class CacheService:
    """One cache replica: lookups, inserts, observations and invalidation over the shared
    entry log."""

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
        self._own_rows: set[int] = set()  # rows applied here before the follower reads them
        self._sync_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._settling: set[asyncio.Task[None]] = set()  # answer vectors, neighbourhoods
        self._last_compaction = 0.0
        self.comparator = Comparator(embed, cache.config.answer_similarity)
        self._precache_budget = HourlyBudget(cache.config.precache.budget_per_hour, cache.clock)
        self.exploration_tokens = {"shadow": 0, "observed": 0}
        self.observations = {"equivalent": 0, "different": 0, "entry_gone": 0}
        self.follow_ups_suggested = 0
        self._last_traffic_flush = 0.0
        # With a shared log, lookups are counted through it, so every replica budgets on all.
        cache.share_traffic = entry_log is not None

    async def start(self) -> None:
        """Replay the log into memory, then keep applying what other replicas append."""
        await self.sync()
        if self._log is not None and self._task is None:
            self._task = asyncio.create_task(self._follow(), name="cache-log-sync")

    async def aclose(self) -> None:
        await self.settled()
        if self._task is not None:
            task, self._task = self._task, None
            await cancelled(task)
            try:
                await self.flush_traffic()
            except Exception:
                log.warning("cache traffic counts not flushed at shutdown", exc_info=True)

    async def embed(self, texts: list[str]) -> np.ndarray:
        """Normalised embeddings of `texts`, one row each (the policy engine's corpora too)."""
        return await self._embed(texts)

    async def lookup(self, query: CacheQuery) -> CacheResult:
        """The four phases for one request (see `SemanticCache`); a conversation's context
        is embedded here, with the last turn when the caller did not pass its embedding. A
        miss first catches up with the log (one read), so an answer stored by any replica
        before the lookup began is found here, not only after the next background sync."""
        result = await self._lookup(query)
        if result.hit is None and result.explore is None and await self.sync():
            result = await self._lookup(dataclasses.replace(query, embedding=result.embedding))
        return dataclasses.replace(result, applied=self._applied)

    async def _lookup(self, query: CacheQuery) -> CacheResult:
        cache = self.cache
        vector = query.embedding
        hit = cache.lookup_keyed(
            query.text, query.scope, query.context, exact_only=query.exact_only, model=query.model
        )
        if (
            hit is None
            and not query.exact_only
            and cache.wants_semantic(query.scope, eligible=query.eligible, context=query.context)
        ):
            wanted = ([query.text] if vector is None else []) + (
                [query.context] if query.context else []
            )
            embedded = await self._embed(wanted) if wanted else None
            if embedded is not None and vector is None:
                vector = embedded[0]
            context_vector = embedded[-1] if query.context and embedded is not None else None
            assert vector is not None  # embedded above when the caller did not pass it
            found = cache.lookup_semantic(
                query.text,
                query.scope,
                vector,
                threshold=query.threshold,
                context=query.context,
                context_vector=context_vector,
                explore=query.explore,
            )
            return CacheResult(
                found.hit, found.similarity, found.rejected, vector, explore=found.explore
            )
        return CacheResult(hit, hit.similarity if hit is not None else 0.0, False, vector)

    async def insert(self, entry: NewEntry) -> int:
        """Store an answer: in the log (shared, persistent) and then in this replica, and
        return, the entry being servable on every replica; its join to the stored neighbours
        whose answers agree (and the answers' vectors that takes) follows (`settled`), off the
        path of the response that waits for this insert."""
        vector = context_vector = None
        if not entry.exact_only:
            wanted = ([entry.text] if entry.embedding is None else []) + (
                [entry.context] if entry.context else []
            )
            embedded = await self._embed(wanted) if wanted else np.zeros((0, 0), np.float32)
            vector = entry.embedding if entry.embedding is not None else embedded[0]
            context_vector = embedded[-1] if entry.context else None
        now = self.cache.clock()
        entry_id = None
        if self._log is not None:
            logged = LoggedEntry(
                0,
                entry.scope,
                entry.model,
                entry.text,
                entry.response,
                vector,
                now,
                entry.context,
                context_vector,
            )
            entry_id = await asyncio.to_thread(self._log.append, logged)
        entry_id = self.cache.insert(
            entry.text,
            entry.scope,
            entry.response,
            embedding=vector,
            entry_id=entry_id,
            created_at=now,
            model=entry.model,
            context=entry.context,
            context_vector=context_vector,
            exact_only=entry.exact_only,
        )
        if not entry.exact_only and self.cache.config.max_error_rate_for(entry.model) is not None:
            task = asyncio.create_task(self._settle(entry_id, entry.response, now))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
            if len(self._settling) > SETTLING_AT_MOST:
                await task  # overloaded: the inserts wait again, and the backlog stays bounded
        return entry_id

    async def settled(self) -> None:
        """Return once the neighbourhoods of the inserts so far (and the answer vectors they
        took) are in."""
        while self._settling:
            await asyncio.wait(set(self._settling))

    async def _settle(self, entry_id: int, response: str, now: float) -> None:
        """A new entry's neighbourhood. Answers are embedded for that alone, once the entry
        has a stored neighbour to compare with: its own, and a neighbour's that has no
        vector yet. Most new questions have none, and an observation of an entry embeds its
        answer itself (`Comparator.fresh`). A neighbour inserted before this is done does not
        join it (the evidence it would have shared is counted from its own checks)."""
        try:
            neighbours = self.cache.neighbours(entry_id)
            if not neighbours:
                return
            await self._embed_answer(entry_id, response, now)
            for neighbour in neighbours:
                if neighbour.entry.answer_vector is None:
                    stored = neighbour.entry
                    await self._embed_answer(stored.entry_id, stored.response, now)
            await self._join_neighbours(entry_id, neighbours, now)
        except Exception:
            log.warning("entry %d: answer vector or neighbourhood not stored", entry_id,
                        exc_info=True)  # fmt: skip

    async def _embed_answer(self, entry_id: int, response: str, now: float) -> None:
        vector = await self.comparator.answer_vector(answer_text(response))
        if vector is None:  # short or structured: compared as text
            return
        if self._log is not None:
            seq = await asyncio.to_thread(self._log.answer_vector, entry_id, vector, now)
            self._own_rows.add(seq)
        self.cache.set_answer_vector(entry_id, vector)

    async def _join_neighbours(
        self, entry_id: int, neighbours: list[Neighbour], now: float
    ) -> None:
        """Stored neighbours whose answers agree with the new one's join its neighbourhood
        (a "join" row: it shares evidence, it is not itself evidence: the pairs of stored
        entries are not what lookups decide on)."""
        new = self.cache.get(entry_id)
        if new is None:
            return
        joins = [
            LoggedObservation(
                neighbour.entry.entry_id,
                new.exact_key,
                neighbour.similarity,
                True,
                "join",
                now,
                entry_id,
            )
            for neighbour in neighbours
            if self.comparator.stored(new, neighbour.entry).equivalent
        ]
        await self._record(joins)

    async def observe(
        self,
        exploration: Exploration,
        fresh_answer: str,
        *,
        tokens: int | None = None,
        verdict: bool | None = None,
    ) -> Observation:
        """Compare an explored candidate's stored answer with the fresh answer the request
        got, learn from it (logged, so every replica learns), and say what was concluded.

        `tokens` is what the fresh call cost (prompt + completion, and a judge's call); by
        default the stored answer's own usage stands in for it. `verdict` is a judge model's,
        when the request path asked one (it decides; None: the rules do). Call it off the
        response path.
        """
        entry = self.cache.get(exploration.entry_id)
        kind = "shadow" if exploration.shadow else "observed"
        if entry is None:
            self.observations["entry_gone"] += 1
            return Observation(
                exploration.entry_id,
                exploration.similarity,
                None,
                "none",
                "entry gone",
                exploration.shadow,
            )
        spent = answer_tokens(entry.response) if tokens is None else tokens
        self.exploration_tokens[kind] += spent
        comparison = await self.comparator.fresh(entry, fresh_answer, verdict=verdict)
        self.observations["equivalent" if comparison.equivalent else "different"] += 1
        pair = exact_key(exploration.scope, exploration.text, exploration.context)
        chance = exploration.chance
        weight = min(_MAX_SHADOW_WEIGHT, 1.0 / chance) if exploration.shadow and chance > 0 else 1.0
        if exploration.repeat:  # the request's own verdict, no sample of the served ones
            weight = 0.0
        await self._record(
            [
                LoggedObservation(
                    entry.entry_id,
                    pair,
                    exploration.similarity,
                    comparison.equivalent,
                    kind,
                    self.cache.clock(),
                    tokens=spent,
                    weight=weight,
                    margin=exploration.margin,
                )
            ]
        )
        return Observation(
            entry.entry_id,
            exploration.similarity,
            comparison.equivalent,
            comparison.method,
            comparison.reason,
            exploration.shadow,
            spent,
            comparison.similarity,
        )

    async def _record(self, observations: list[LoggedObservation]) -> None:
        if not observations:
            return
        if self._log is not None:
            seqs = await asyncio.to_thread(self._log.observe, observations)
            self._own_rows.update(seqs)
        for o in observations:
            self.cache.learn(
                o.entry_id,
                o.pair,
                o.similarity,
                o.equivalent,
                o.created_at,
                other=o.other,
                kind=o.kind,
                weight=o.weight,
                margin=o.margin,
            )

    async def follow_ups(self, request: CacheRequest) -> list[FollowUp]:
        """Follow-up questions worth answering in the background now that `request` was
        answered ([] when pre-caching is off, the budget is spent, or nothing qualifies)."""
        settings = self.cache.config.precache
        if not settings.enabled or request.follow_up_scope is None or not request.text:
            return []
        context = "\n".join(p for p in (request.text, request.context) if p)
        context_vector = (await self._embed([context]))[0]
        suggested = suggest_follow_ups(
            self.cache,
            follow_up_scope=request.follow_up_scope,
            context=context,
            context_vector=context_vector,
        )
        granted = []
        for follow_up in suggested:
            if not self._precache_budget.take():
                break
            granted.append(follow_up)
        self.follow_ups_suggested += len(granted)
        return granted

    async def count_nearby(self, hits: NearbyHits) -> None:
        """Count the exact hits an ingress replica answered itself (`NearCache`) here."""
        self.cache.count_nearby(hits)

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
        if op.seq in self._own_rows:
            self._own_rows.discard(op.seq)
            return
        if op.op == "delete" and op.deleted is not None:
            self.cache.remove([op.deleted])
            return
        if op.op == "answer" and op.answered is not None:
            self.cache.set_answer_vector(*op.answered)
            return
        if op.op == "traffic":
            batches = [(b.model, b.kind, b.lookups, list(b.risks), b.served) for b in op.traffic]
            self.cache.count_traffic(batches, op.created_at)
            return
        if op.op == "observe" and op.observed is not None:
            o = op.observed
            self.cache.learn(
                o.entry_id,
                o.pair,
                o.similarity,
                o.equivalent,
                o.created_at,
                other=o.other,
                kind=o.kind,
                weight=o.weight,
                margin=o.margin,
            )
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
            model=entry.model,
            context=entry.context,
            context_vector=entry.context_vector,
            exact_only=entry.vector is None,
        )

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._sync_interval_s)
            try:
                await self.sync()
                if time.monotonic() - self._last_traffic_flush >= _TRAFFIC_FLUSH_S:
                    await self.flush_traffic()
                await self._maybe_compact()
            except Exception:
                # A database blip must not end the follower: the next round catches up.
                log.exception("cache log sync failed; retrying in %.1fs", self._sync_interval_s)

    async def flush_traffic(self) -> None:
        """Ship the lookups and candidate risks counted here to every replica (the log)."""
        self._last_traffic_flush = time.monotonic()
        drained = self.cache.traffic.drain()
        if self._log is None or not drained:
            return
        at = self.cache.clock()
        batches = [TrafficBatch(m, k, n, tuple(r), spent) for m, k, n, r, spent in drained]
        seq = await asyncio.to_thread(self._log.count_traffic, batches, at)
        self._own_rows.add(seq)
        self.cache.count_traffic(drained, at)

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
            observations_before=wall - config.learning_window_s,
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
            "learned_hits": s.learned_hits,
            "explorations": dict(s.explored),
            "exploration_tokens": dict(self.exploration_tokens),
            "observations": dict(self.observations),
            "observations_by_alias": self.cache.learner.alias_observations(),
            "follow_ups_suggested": self.follow_ups_suggested,
            "applied_seq": self._applied,
        }
