"""The semantic cache: exact, normalised and semantic phases over one entry store."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.cache.budget import HourlyBudget, Traffic, TrafficMeter
from gateway.cache.candidates import (
    CacheStats,
    Neighbour,
    SemanticResult,
    facts_agree,
    half,
    index_vector,
    kind_of,
    partition,
)
from gateway.cache.config import CacheConfig
from gateway.cache.embedder import TextEmbedder
from gateway.cache.index import SemanticIndex
from gateway.cache.keys import exact_key, normalised_key
from gateway.cache.learning import Kind, Learner
from gateway.cache.lookup import Exploration, Hit, NearbyHits, Phase
from gateway.cache.store import Entry, EntryStore


class SemanticCache:
    """Answers a request from an earlier answer to the same or a paraphrased request.

    `lookup` tries, in order: the exact request (phase 1), its normalised signature (phase 2),
    and, when the request is eligible, the nearest stored requests of the same scope by
    embedding (phase 3) whose facts agree with it (phase 4). A conversation's earlier user
    turns (`context`) must match as well: exactly for phases 1-2, in meaning for phase 3 (its
    similarity is the lower of the last turn's and the context's; the learned phase also reads
    the context as a question). Phase 3 decides with the learned `Learner` under
    `max_error_rate` (serve, explore or miss), or with the static threshold alone when that is
    None. `scope` must come from `keys.scope_key` or
    `request.chat_request`, so entries never cross models, system prompts, parameters or
    isolation boundaries. Entries expire `ttl_s` after insertion and the least recently used
    go first once `max_entries` is reached. Safe to share between threads.
    """

    def __init__(
        self,
        embedder: TextEmbedder,
        config: CacheConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config or CacheConfig()
        self.embedder = embedder
        self.clock = clock
        self.rng = rng or random.Random()
        self.stats = CacheStats()
        self.learner = Learner(self.config.learning_window_s, clock, self.rng)
        self.budget = HourlyBudget(self.config.exploration_budget_per_hour, clock)
        # Lookups and decided candidates' risks not yet counted by the learner. In-process
        # they are counted at once; a service with a shared log ships them through it
        # (`traffic.drain()`), so every replica counts everyone's traffic.
        self.traffic = TrafficMeter()
        self.share_traffic = False
        self._store = EntryStore()
        self._index = SemanticIndex(
            embedder.dim,
            approximate_after=self.config.approximate_after,
            hnsw_m=self.config.hnsw_m,
            hnsw_ef_search=self.config.hnsw_ef_search,
            hnsw_ef_construction=self.config.hnsw_ef_construction,
        )
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._store)

    @property
    def index(self) -> SemanticIndex:
        """The vector index behind the semantic phase (read-only use)."""
        return self._index

    def get(self, entry_id: int) -> Entry | None:
        """The stored entry with this id, if any (read-only use)."""
        with self._lock:
            return self._store.get(entry_id)

    def lookup(
        self,
        request_text: str,
        scope: str,
        *,
        eligible: bool = True,
        embedding: np.ndarray | None = None,
        threshold: float | None = None,
        context: str = "",
    ) -> Hit | None:
        """Return a cached answer for `request_text` in `scope`, or None on a miss.

        Pass `embedding` when the request was already embedded (the policy engine shares it);
        otherwise it is computed here, and only if phases 1 and 2 missed.
        """
        hit = self.lookup_keyed(request_text, scope, context)
        if hit is not None:
            return hit
        if not self.wants_semantic(scope, eligible=eligible, context=context):
            return None
        # Embedding is the slow part: done outside the lock so lookups can overlap.
        vector = embedding if embedding is not None else self.embedder.embed([request_text])[0]
        context_vector = self.embedder.embed([context])[0] if context else None
        found = self.lookup_semantic(
            request_text,
            scope,
            vector,
            threshold=threshold,
            context=context,
            context_vector=context_vector,
        )
        return found.hit

    def lookup_keyed(
        self,
        request_text: str,
        scope: str,
        context: str = "",
        *,
        exact_only: bool = False,
        model: str = "",
    ) -> Hit | None:
        """Phases 1 and 2: the exact request, then its normalised signature (phase 1 alone,
        byte for byte, for `exact_only` routes). A miss here is not counted yet: the caller
        goes on to `wants_semantic` / `lookup_semantic`. Counts the lookup towards `model`'s
        error budget."""
        with self._lock:
            self._expire()
            if not exact_only:
                self._count(model, kind_of(context), None)
            keyed: list[tuple[Phase, Entry | None]] = [
                (
                    "exact",
                    self._store.by_exact(exact_key(scope, request_text, context, raw=exact_only)),
                )
            ]
            if not exact_only:
                normalised = normalised_key(scope, request_text, context)
                keyed.append(("normalized", self._store.by_normalised(normalised)))
            for phase, entry in keyed:
                if entry is not None:
                    return self._keyed_hit(entry, phase)
            return None

    def _keyed_hit(self, entry: Entry, phase: Phase) -> Hit:
        self._store.touch(entry, self.clock())
        self.stats.hits[phase] += 1
        return Hit(
            entry.entry_id, entry.response, phase, 1.0, entry.text, created_at=entry.created_at
        )

    def wants_semantic(self, scope: str, *, eligible: bool, context: str = "") -> bool:
        """Whether phase 3 could find anything after a keyed miss; counts the miss if not."""
        with self._lock:
            if not eligible:
                self.stats.ineligible += 1
                self.stats.misses += 1
                return False
            if self._index.scope_size(partition(scope, context)) == 0:
                self.stats.misses += 1
                return False
            return True

    def lookup_semantic(
        self,
        request_text: str,
        scope: str,
        vector: np.ndarray,
        *,
        threshold: float | None = None,
        context: str = "",
        context_vector: np.ndarray | None = None,
        explore: bool = False,
    ) -> SemanticResult:
        """Phases 3 and 4: the nearest stored requests of `scope` whose facts agree with the
        request; the best one is served, explored or missed (see the class docstring).
        Counts the hit or the miss. A conversation needs `context_vector`. Explorations are
        returned only to a caller that will `observe` them (`explore`); to any other a
        candidate is served or missed, as the learned state stands."""
        if context and context_vector is None:
            raise ValueError("a conversation's lookup needs its context's vector")
        key = exact_key(scope, request_text, context)
        with self._lock:
            rejected = False
            best = 0.0
            candidates = self._candidates(vector, scope, context, context_vector)
            for entry, similarity, context_similarity in candidates:
                if entry.exact_key == key:  # stored since phase 1 missed: another replica's
                    # answer, applied from the log while this request was being embedded
                    return SemanticResult(self._keyed_hit(entry, "exact"), similarity, rejected)
                best = max(best, similarity)
                static = self.config.threshold_for(entry.model) if threshold is None else threshold
                bound = self.config.max_error_rate_for(entry.model)
                floor = static if bound is None else min(static, self.config.learn_min_similarity)
                if similarity < floor:
                    break
                if self.config.verify and not facts_agree(request_text, context, entry):
                    rejected = True
                    continue
                if bound is None:
                    return self._serve(entry, similarity, rejected, learned=False)
                margin = self.learner.margin(
                    entry.entry_id, similarity, [(e.entry_id, s) for e, s, _ in candidates]
                )
                decision = self.learner.decide(
                    entry.entry_id,
                    similarity,
                    margin=margin,
                    static_threshold=static,
                    bound=bound,
                    max_hit_risk=self.config.max_hit_risk,
                    exploration_rate=self.config.exploration_rate_for(entry.model) * explore,
                    budget=self.budget,
                    pair=key,
                    context_similarity=context_similarity,
                )
                self._count(
                    entry.model, kind_of(context), decision.risk, served=decision.action == "serve"
                )
                if decision.action == "serve":
                    return self._serve(entry, similarity, rejected, learned=similarity < static)
                if not explore:
                    break
                kind = "shadow" if decision.shadow else "observed"
                self.stats.explored[kind] += 1
                self.stats.misses += 1
                exploration = Exploration(
                    entry.entry_id,
                    similarity,
                    scope,
                    request_text,
                    context,
                    entry.model,
                    decision.shadow,
                    round(decision.risk, 6),
                    decision.chance,
                    margin,
                    decision.repeat,
                    entry.response,
                )
                return SemanticResult(None, similarity, rejected, exploration)
            if rejected:
                self.stats.rejected_by_verification += 1
            self.stats.misses += 1
            return SemanticResult(None, best, rejected)

    def _serve(
        self, entry: Entry, similarity: float, rejected: bool, *, learned: bool
    ) -> SemanticResult:
        self._store.touch(entry, self.clock())
        self.stats.hits["semantic"] += 1
        self.stats.learned_hits += learned
        hit = Hit(entry.entry_id, entry.response, "semantic", similarity, entry.text)
        return SemanticResult(hit, similarity, rejected)

    def _candidates(
        self, vector: np.ndarray, scope: str, context: str, context_vector: np.ndarray | None
    ) -> list[tuple[Entry, float, float | None]]:
        """Live entries of the request's partition, most similar first, with their
        similarity and, for a conversation, its context's. A conversation's similarity is the
        lower of its last turn's and its context's."""
        found: list[tuple[Entry, float, float | None]] = []
        query = index_vector(vector, context_vector)
        for candidate in self._index.search(query, self.config.top_k, partition(scope, context)):
            entry = self._store.get(candidate.entry_id)
            if entry is None:
                continue
            similarity, ctx = candidate.similarity, None
            if (
                context_vector is not None
                and entry.turn_vector is not None
                and entry.context_vector is not None
            ):
                turn = float(np.dot(vector, entry.turn_vector.astype(np.float32)))
                ctx = float(np.dot(context_vector, entry.context_vector.astype(np.float32)))
                similarity = min(turn, ctx)
            found.append((entry, similarity, ctx))
        return sorted(found, key=lambda pair: -pair[1])

    def neighbours(self, entry_id: int) -> list[Neighbour]:
        """Other entries of `entry_id`'s partition at or above `learn_min_similarity` whose
        facts agree with it: the comparisons an insert can learn from for free."""
        with self._lock:
            entry = self._store.get(entry_id)
            if entry is None or entry.exact_only or entry_id not in self._index:
                return []
            vector = self._index.vector(entry_id)
            turn = entry.turn_vector.astype(np.float32) if entry.turn_vector is not None else None
            ctx = entry.context_vector
            found = self._candidates(
                turn if turn is not None else vector,
                entry.scope,
                entry.context,
                ctx.astype(np.float32) if ctx is not None else None,
            )
            return [
                Neighbour(other, similarity)
                for other, similarity, _ in found
                if other.entry_id != entry_id
                and similarity >= self.config.learn_min_similarity
                and (not self.config.verify or facts_agree(entry.text, entry.context, other))
            ]

    def _count(
        self, model: str, kind: Kind, risk: float | None = None, *, served: bool = False
    ) -> None:
        if risk is None:
            self.traffic.lookup(model, kind)
        else:
            self.traffic.candidate(model, kind, risk, served=served)
        if not self.share_traffic:
            self.count_traffic(self.traffic.drain(), self.clock())

    def count_nearby(self, hits: NearbyHits) -> None:
        """Count exact hits an ingress replica answered from its near cache as this
        replica's own: towards each alias's lookups, the entries' recency, the counters."""
        with self._lock:
            now = self.clock()
            self.stats.hits["exact"] += hits.count
            for model, kind, count in hits.lookups:
                self.traffic.lookup(model, kind, count)
            for entry_id in hits.entry_ids:
                entry = self._store.get(entry_id)
                if entry is not None:
                    self._store.touch(entry, now)
            if not self.share_traffic:
                self.count_traffic(self.traffic.drain(), now)

    def count_traffic(self, batches: list[Traffic], at: float) -> None:
        """Count traffic batches (this replica's, or any replica's from the log)."""
        with self._lock:
            for model, kind, lookups, risks, served in batches:
                self.learner.count_traffic(model, kind, at, lookups, risks, served)

    def learn(
        self,
        entry_id: int,
        pair: str,
        similarity: float,
        equivalent: bool,
        at: float,
        *,
        other: int | None = None,
        kind: str = "observed",
        weight: float = 1.0,
        margin: float | None = None,
    ) -> bool:
        """Apply one observation of `entry_id`'s answer (from the log, in log order): an
        agreeing `other` entry joins its neighbourhood; a "join" is nothing more. Returns
        whether it was new evidence."""
        with self._lock:
            if other is not None and equivalent:
                self.learner.join(entry_id, other)
            if kind == "join":
                return False
            return self.learner.record(
                entry_id, pair, similarity, equivalent, at, weight, margin=margin
            )

    def set_answer_vector(self, entry_id: int, vector: np.ndarray) -> None:
        """Keep the vector an entry's answer is compared by (it arrives after the entry)."""
        with self._lock:
            entry = self._store.get(entry_id)
            if entry is not None:
                entry.answer_vector = half(vector)

    def conversations(self, scope: str) -> list[Entry]:
        """The live conversation entries of `scope` (pre-caching reads what followed what)."""
        with self._lock:
            ids = self._index.scope_entry_ids(partition(scope, "conversation"))
            return [e for i in ids if (e := self._store.get(i)) is not None]

    def insert(
        self,
        request_text: str,
        scope: str,
        response: str,
        *,
        embedding: np.ndarray | None = None,
        entry_id: int | None = None,
        created_at: float | None = None,
        model: str = "",
        context: str = "",
        context_vector: np.ndarray | None = None,
        answer_vector: np.ndarray | None = None,
        exact_only: bool = False,
    ) -> int:
        """Store `response` as the answer to `request_text` in `scope`; return the entry id.

        A request already stored under the same exact key is replaced by the newer answer.
        `entry_id` and `created_at` come from the shared entry log when replicas replay it.
        A conversation (`context`) needs `context_vector`; `exact_only` entries are not
        embedded and only the exact phase finds them.
        """
        if context and context_vector is None and not exact_only:
            context_vector = self.embedder.embed([context])[0]
        vector = None
        if not exact_only:
            vector = embedding if embedding is not None else self.embedder.embed([request_text])[0]
        with self._lock:
            now = self.clock() if created_at is None else created_at
            key = exact_key(scope, request_text, context, raw=exact_only)
            previous = self._store.by_exact(key)
            if previous is not None:
                self._drop(previous.entry_id)
            entry = Entry(
                entry_id=self._store.next_id if entry_id is None else entry_id,
                scope=scope,
                text=request_text,
                response=response,
                exact_key=key,
                normalised_key="" if exact_only else normalised_key(scope, request_text, context),
                created_at=now,
                last_used_at=now,
                model=model,
                context=context,
                exact_only=exact_only,
                turn_vector=half(vector) if context else None,
                context_vector=half(context_vector) if context else None,
                answer_vector=half(answer_vector),
            )
            self._store.add(entry)
            if vector is not None:
                indexed = index_vector(vector, context_vector if context else None)
                self._index.add([entry.entry_id], np.atleast_2d(indexed), partition(scope, context))
                self.learner.add_entry(entry.entry_id, model, kind_of(context))
            while len(self._store) > self.config.max_entries:
                oldest = self._store.least_recently_used()
                if oldest is None:
                    break
                self._drop(oldest.entry_id)
                self.stats.evicted += 1
            return entry.entry_id

    def insert_many(
        self, items: list[tuple[str, str, str]], *, embeddings: np.ndarray | None = None
    ) -> list[int]:
        """Insert (request_text, scope, response) triples, embedding them in one batch."""
        if embeddings is None:
            embeddings = self.embedder.embed([text for text, _, _ in items])
        return [
            self.insert(text, scope, response, embedding=vector)
            for (text, scope, response), vector in zip(items, embeddings, strict=True)
        ]

    def __contains__(self, entry_id: object) -> bool:
        with self._lock:
            return isinstance(entry_id, int) and self._store.get(entry_id) is not None

    def remove(self, entry_ids: list[int]) -> int:
        """Drop these entries (invalidation); return how many were stored."""
        with self._lock:
            present = [i for i in entry_ids if self._store.get(i) is not None]
            for entry_id in present:
                self._drop(entry_id)
            return len(present)

    def _drop(self, entry_id: int) -> None:
        self._store.remove(entry_id)
        self._index.remove(entry_id)
        self.learner.remove_entry(entry_id)

    def _expire(self) -> None:
        for entry in self._store.expired(self.clock() - self.config.ttl_s):
            self._drop(entry.entry_id)
            self.stats.expired += 1

    def save(self, path: str | Path) -> None:
        """Snapshot entries (SQLite) and vectors (FAISS) under directory `path`. The learned
        state lives in the shared entry log, not in snapshots."""
        directory = Path(path)
        with self._lock:
            directory.mkdir(parents=True, exist_ok=True)
            self._index.save(directory / "index")
            self._store.save(directory / "entries.sqlite")

    def load(self, path: str | Path) -> None:
        """Restore what `save` wrote under `path`, replacing the current content."""
        directory = Path(path)
        with self._lock:
            self._store.load(directory / "entries.sqlite")
            self._index.load(directory / "index")
            self.learner = Learner(self.config.learning_window_s, self.clock, self.rng)
            # Keep the two halves consistent if a crash landed between their snapshots.
            for entry in list(self._store):
                if entry.entry_id not in self._index and not entry.exact_only:
                    self._store.remove(entry.entry_id)
                elif not entry.exact_only:
                    self.learner.add_entry(entry.entry_id, entry.model, kind_of(entry.context))
            for entry_id in self._index.entry_ids():
                if self._store.get(entry_id) is None:
                    self._index.remove(entry_id)
            self._expire()
