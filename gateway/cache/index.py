"""FAISS inner-product search over normalised embeddings, one index per scope.

One index per scope rather than one shared index filtered by scope: isolation then holds by
construction (a search cannot even see another scope's vectors), a search costs what its own
scope holds rather than what the whole cache holds, and a global top-k never comes back empty
because every neighbour belonged to someone else. Scopes start on an exact `IndexFlatIP` and
move to HNSW once they pass `approximate_after` entries (see benchmarks/cache_quality.py for
the recall/latency measurement behind the default).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import faiss
import numpy as np

# Removed entries stay in a FAISS index as tombstones (HNSW cannot delete); past this share of
# dead rows the scope's index is rebuilt from its live vectors.
_COMPACT_RATIO = 0.25


class Candidate(NamedTuple):
    """A stored entry near the query, with its cosine similarity."""

    entry_id: int
    similarity: float


@dataclass
class _ScopeIndex:
    index: Any
    ids: list[int] = field(default_factory=list)  # FAISS row -> entry id
    dead: set[int] = field(default_factory=set)  # FAISS rows of removed entries

    @property
    def live(self) -> int:
        return len(self.ids) - len(self.dead)

    @property
    def approximate(self) -> bool:
        return not isinstance(self.index, faiss.IndexFlat)


class SemanticIndex:
    """Nearest stored requests to a query embedding, restricted to one scope."""

    def __init__(
        self,
        dim: int,
        *,
        approximate_after: int = 10_000,
        hnsw_m: int = 32,
        hnsw_ef_search: int = 64,
        hnsw_ef_construction: int = 80,
    ) -> None:
        self.dim = dim
        self.approximate_after = approximate_after
        self.hnsw_m = hnsw_m
        self.hnsw_ef_search = hnsw_ef_search
        self.hnsw_ef_construction = hnsw_ef_construction
        self._scopes: dict[str, _ScopeIndex] = {}
        self._where: dict[int, tuple[str, int]] = {}  # entry id -> (scope, FAISS row)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._where

    def entry_ids(self) -> list[int]:
        """Ids of every live entry, all scopes together."""
        return list(self._where)

    def scope_size(self, scope: str) -> int:
        """Live entries in `scope`."""
        s = self._scopes.get(scope)
        return s.live if s else 0

    def is_approximate(self, scope: str) -> bool:
        """Whether `scope` is currently served by the approximate (HNSW) index."""
        s = self._scopes.get(scope)
        return bool(s and s.approximate)

    def _new_index(self, size: int) -> Any:
        if size <= self.approximate_after:
            return faiss.IndexFlatIP(self.dim)
        index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.hnsw_ef_construction
        index.hnsw.efSearch = self.hnsw_ef_search
        return index

    def add(self, entry_ids: list[int], vectors: np.ndarray, scope: str) -> None:
        """Add normalised `vectors` (one row per id) to `scope`; ids must be new."""
        vectors = self._as_matrix(vectors)
        if len(entry_ids) != len(vectors):
            raise ValueError("one vector per entry id is needed")
        for entry_id in entry_ids:
            if entry_id in self._where:
                raise ValueError(f"entry {entry_id} is already indexed")
        s = self._scopes.get(scope)
        if s is None:
            s = self._scopes[scope] = _ScopeIndex(self._new_index(len(entry_ids)))
        first_row = len(s.ids)
        s.index.add(vectors)
        for offset, entry_id in enumerate(entry_ids):
            s.ids.append(entry_id)
            self._where[entry_id] = (scope, first_row + offset)
        if not s.approximate and s.live > self.approximate_after:
            self._rebuild(scope)

    def remove(self, entry_id: int) -> None:
        """Forget `entry_id`; unknown ids are ignored."""
        where = self._where.pop(entry_id, None)
        if where is None:
            return
        scope, row = where
        s = self._scopes[scope]
        s.dead.add(row)
        if s.live == 0:
            del self._scopes[scope]
        elif len(s.dead) > _COMPACT_RATIO * len(s.ids):
            self._rebuild(scope)

    def scope_entry_ids(self, scope: str) -> list[int]:
        """Ids of the live entries of `scope`."""
        s = self._scopes.get(scope)
        if s is None:
            return []
        return [entry_id for row, entry_id in enumerate(s.ids) if row not in s.dead]

    def vector(self, entry_id: int) -> np.ndarray:
        """The stored vector of `entry_id` (KeyError for an unknown id)."""
        scope, row = self._where[entry_id]
        return np.asarray(self._scopes[scope].index.reconstruct(row), dtype=np.float32)

    def search(self, vector: np.ndarray, k: int, scope: str) -> list[Candidate]:
        """Up to `k` live entries of `scope` nearest to `vector`, most similar first."""
        s = self._scopes.get(scope)
        if s is None or k <= 0:
            return []
        # Ask for enough extra rows that tombstones cannot crowd out k live ones.
        want = min(len(s.ids), k + len(s.dead))
        scores, rows = s.index.search(self._as_matrix(vector), want)
        found: list[Candidate] = []
        for score, row in zip(scores[0], rows[0], strict=True):
            if row < 0 or row in s.dead:
                continue
            found.append(Candidate(s.ids[row], float(score)))
            if len(found) == k:
                break
        return found

    def _rebuild(self, scope: str) -> None:
        s = self._scopes[scope]
        live_rows = [r for r in range(len(s.ids)) if r not in s.dead]
        vectors = s.index.reconstruct_n(0, len(s.ids))[live_rows]
        fresh = _ScopeIndex(self._new_index(len(live_rows)))
        fresh.index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        fresh.ids = [s.ids[r] for r in live_rows]
        self._scopes[scope] = fresh
        for row, entry_id in enumerate(fresh.ids):
            self._where[entry_id] = (scope, row)

    def _as_matrix(self, vectors: np.ndarray) -> np.ndarray:
        matrix = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if matrix.shape[1] != self.dim:
            raise ValueError(f"expected vectors of width {self.dim}, got {matrix.shape[1]}")
        return matrix

    def save(self, path: str | Path) -> None:
        """Write every scope's FAISS index and the row->entry maps under directory `path`."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("*.faiss"):
            old.unlink()
        manifest: dict[str, Any] = {"dim": self.dim, "scopes": []}
        for number, (scope, s) in enumerate(self._scopes.items()):
            # Scope keys are hashes, but file names are numbered so nothing depends on that.
            name = f"scope-{number}.faiss"
            faiss.write_index(s.index, str(directory / name))
            manifest["scopes"].append(
                {"scope": scope, "file": name, "ids": s.ids, "dead": sorted(s.dead)}
            )
        tmp = directory / "manifest.json.tmp"
        tmp.write_text(json.dumps(manifest))
        tmp.replace(directory / "manifest.json")

    def load(self, path: str | Path) -> None:
        """Replace this index's content with what `save` wrote under `path`."""
        directory = Path(path)
        manifest = json.loads((directory / "manifest.json").read_text())
        if manifest["dim"] != self.dim:
            raise ValueError(f"saved index has width {manifest['dim']}, expected {self.dim}")
        self._scopes.clear()
        self._where.clear()
        for item in manifest["scopes"]:
            index = faiss.read_index(str(directory / item["file"]))
            if isinstance(index, faiss.IndexHNSW):
                index.hnsw.efSearch = self.hnsw_ef_search
            s = _ScopeIndex(index, list(item["ids"]), set(item["dead"]))
            self._scopes[item["scope"]] = s
            for row, entry_id in enumerate(s.ids):
                if row not in s.dead:
                    self._where[entry_id] = (item["scope"], row)
