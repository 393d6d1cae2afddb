"""The FAISS index: per-scope search, removal, the flat to HNSW switch, persistence."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.cache.index import SemanticIndex

DIM = 32


def _unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_search_finds_the_stored_vector_with_similarity_one() -> None:
    index = SemanticIndex(DIM)
    vectors = _unit_rows(50)
    index.add(list(range(100, 150)), vectors, "s")
    found = index.search(vectors[7], 3, "s")
    assert found[0].entry_id == 107
    assert abs(found[0].similarity - 1.0) < 1e-5
    assert found[0].similarity >= found[1].similarity >= found[2].similarity


def test_search_never_returns_another_scopes_entries() -> None:
    index = SemanticIndex(DIM)
    vectors = _unit_rows(20)
    index.add(list(range(10)), vectors[:10], "alice")
    index.add(list(range(10, 20)), vectors[10:], "bob")
    assert {c.entry_id for c in index.search(vectors[3], 20, "bob")} <= set(range(10, 20))
    assert index.search(vectors[3], 5, "carol") == []


def test_removed_entries_are_not_found_and_compaction_keeps_the_rest() -> None:
    index = SemanticIndex(DIM)
    vectors = _unit_rows(40)
    index.add(list(range(40)), vectors, "s")
    for entry_id in range(0, 40, 2):  # past the tombstone ratio, so it compacts
        index.remove(entry_id)
    assert len(index) == 20
    for entry_id in range(1, 40, 2):
        assert index.search(vectors[entry_id], 1, "s")[0].entry_id == entry_id
    assert all(c.entry_id % 2 == 1 for c in index.search(vectors[0], 10, "s"))


def test_switch_from_flat_to_hnsw_keeps_results() -> None:
    vectors = _unit_rows(600, seed=1)
    queries = vectors[:50] + 0.05 * _unit_rows(50, seed=2)
    flat = SemanticIndex(DIM, approximate_after=10_000)
    switching = SemanticIndex(DIM, approximate_after=300, hnsw_ef_search=128)
    for start in range(0, 600, 100):
        ids = list(range(start, start + 100))
        flat.add(ids, vectors[start : start + 100], "s")
        switching.add(ids, vectors[start : start + 100], "s")
    assert not flat.is_approximate("s")
    assert switching.is_approximate("s")
    agree = sum(
        flat.search(q, 1, "s")[0].entry_id == switching.search(q, 1, "s")[0].entry_id
        for q in queries
    )
    assert agree >= 49


def test_save_and_load_keep_every_scope(tmp_path: Path) -> None:
    index = SemanticIndex(DIM, approximate_after=30)
    vectors = _unit_rows(60)
    index.add(list(range(40)), vectors[:40], "big")  # HNSW
    index.add(list(range(40, 60)), vectors[40:], "small")  # flat
    index.remove(5)
    index.save(tmp_path / "idx")
    restored = SemanticIndex(DIM, approximate_after=30)
    restored.load(tmp_path / "idx")
    assert len(restored) == 59
    assert restored.is_approximate("big") and not restored.is_approximate("small")
    assert restored.search(vectors[45], 1, "small")[0].entry_id == 45
    assert restored.search(vectors[9], 1, "big")[0].entry_id == 9
    assert 5 not in {c.entry_id for c in restored.search(vectors[5], 10, "big")}
