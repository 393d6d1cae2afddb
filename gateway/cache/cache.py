"""The semantic cache: exact, normalised and semantic phases over one entry store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gateway.cache.config import CacheConfig
from gateway.cache.embedder import TextEmbedder
from gateway.cache.index import SemanticIndex
from gateway.cache.keys import exact_key, normalised_key
from gateway.cache.lookup import Hit, Phase
from gateway.cache.store import Entry, EntryStore
from gateway.cache.verify import verify_candidate

PHASES: tuple[Phase, ...] = ("exact", "normalized", "semantic")


@dataclass(frozen=True)
class SemanticResult:
    """Phases 3 and 4 for one request: the hit if any, the best similarity seen, and whether
    verification refused a candidate above the threshold."""

    hit: Hit | None
    similarity: float
    rejected: bool


@dataclass
class CacheStats:
    """Counters since start: hits per phase, misses, and semantic hits refused by phase 4."""

    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    misses: int = 0
    rejected_by_verification: int = 0
    ineligible: int = 0
    evicted: int = 0
    expired: int = 0


class SemanticCache:
    """Answers a request from an earlier answer to the same or a paraphrased request.

    `lookup` tries, in order: the exact request (phase 1), its normalised signature (phase 2),
    and, when the request is eligible, the nearest stored requests of the same scope by
    embedding (phase 3) whose facts agree with it (phase 4). `scope` must come from
    `keys.scope_key`, so entries never cross models, system prompts, parameters, conversations
    or isolation boundaries. Entries expire `ttl_s` after insertion and the least recently used
    go first once `max_entries` is reached. Safe to share between threads.
    """

    def __init__(
        self,
        embedder: TextEmbedder,
        config: CacheConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config or CacheConfig()
        self.embedder = embedder
        self.clock = clock
        self.stats = CacheStats()
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

    def lookup(
        self,
        request_text: str,
        scope: str,
        *,
        eligible: bool = True,
        embedding: np.ndarray | None = None,
        threshold: float | None = None,
    ) -> Hit | None:
        """Return a cached answer for `request_text` in `scope`, or None on a miss.

        Pass `embedding` when the request was already embedded (the policy engine shares it);
        otherwise it is computed here, and only if phases 1 and 2 missed.
        """
        hit = self.lookup_keyed(request_text, scope)
        if hit is not None:
            return hit
        if not self.wants_semantic(scope, eligible=eligible):
            return None
        # Embedding is the slow part: done outside the lock so lookups can overlap.
        vector = embedding if embedding is not None else self.embedder.embed([request_text])[0]
        return self.lookup_semantic(request_text, scope, vector, threshold=threshold).hit

    def lookup_keyed(self, request_text: str, scope: str) -> Hit | None:
        """Phases 1 and 2: the exact request, then its normalised signature. A miss here is
        not counted yet: the caller goes on to `wants_semantic` / `lookup_semantic`."""
        with self._lock:
            self._expire()
            keyed: tuple[tuple[Phase, Entry | None], ...] = (
                ("exact", self._store.by_exact(exact_key(scope, request_text))),
                ("normalized", self._store.by_normalised(normalised_key(scope, request_text))),
            )
            for phase, entry in keyed:
                if entry is not None:
                    self._store.touch(entry, self.clock())
                    self.stats.hits[phase] += 1
                    return Hit(entry.entry_id, entry.response, phase, 1.0, entry.text)
            return None

    def wants_semantic(self, scope: str, *, eligible: bool) -> bool:
        """Whether phase 3 could find anything after a keyed miss; counts the miss if not."""
        with self._lock:
            if not eligible:
                self.stats.ineligible += 1
                self.stats.misses += 1
                return False
            if self._index.scope_size(scope) == 0:
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
    ) -> SemanticResult:
        """Phases 3 and 4: the nearest stored requests of `scope` above the threshold, the
        first whose facts agree with the request served. Counts the hit or the miss."""
        bound = self.config.similarity_threshold if threshold is None else threshold
        with self._lock:
            rejected = False
            best = 0.0
            for candidate in self._index.search(vector, self.config.top_k, scope):
                best = max(best, candidate.similarity)
                if candidate.similarity < bound:
                    break
                entry = self._store.get(candidate.entry_id)
                if entry is None:
                    continue
                if self.config.verify and not verify_candidate(request_text, entry.text).accepted:
                    rejected = True
                    continue
                self._store.touch(entry, self.clock())
                self.stats.hits["semantic"] += 1
                hit = Hit(
                    entry.entry_id, entry.response, "semantic", candidate.similarity, entry.text
                )
                return SemanticResult(hit, candidate.similarity, rejected)
            if rejected:
                self.stats.rejected_by_verification += 1
            self.stats.misses += 1
            return SemanticResult(None, best, rejected)

    def insert(
        self,
        request_text: str,
        scope: str,
        response: str,
        *,
        embedding: np.ndarray | None = None,
        entry_id: int | None = None,
        created_at: float | None = None,
    ) -> int:
        """Store `response` as the answer to `request_text` in `scope`; return the entry id.

        A request already stored under the same exact key is replaced by the newer answer.
        `entry_id` and `created_at` come from the shared entry log when replicas replay it.
        """
        vector = embedding if embedding is not None else self.embedder.embed([request_text])[0]
        with self._lock:
            now = self.clock() if created_at is None else created_at
            key = exact_key(scope, request_text)
            previous = self._store.by_exact(key)
            if previous is not None:
                self._drop(previous.entry_id)
            entry = Entry(
                entry_id=self._store.next_id if entry_id is None else entry_id,
                scope=scope,
                text=request_text,
                response=response,
                exact_key=key,
                normalised_key=normalised_key(scope, request_text),
                created_at=now,
                last_used_at=now,
            )
            self._store.add(entry)
            self._index.add([entry.entry_id], np.atleast_2d(vector), scope)
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

    def _expire(self) -> None:
        for entry in self._store.expired(self.clock() - self.config.ttl_s):
            self._drop(entry.entry_id)
            self.stats.expired += 1

    def save(self, path: str | Path) -> None:
        """Snapshot entries (SQLite) and vectors (FAISS) under directory `path`."""
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
            # Keep the two halves consistent if a crash landed between their snapshots.
            for entry in list(self._store):
                if entry.entry_id not in self._index:
                    self._store.remove(entry.entry_id)
            for entry_id in self._index.entry_ids():
                if self._store.get(entry_id) is None:
                    self._index.remove(entry_id)
            self._expire()
