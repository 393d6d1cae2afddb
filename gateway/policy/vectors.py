"""Embeddings of the policy's own phrases (topic examples, known attacks), from outside.

The policy engine never loads a model: phrases are embedded through an injected async
`embed(texts) -> (n, dim) float32` callable, the same embedder that embeds each request (in
production a Ray Serve deployment). Vectors are kept per phrase, so a reload that adds one
example embeds only that one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence

import numpy as np

Embed = Callable[[list[str]], Awaitable[np.ndarray]]
"""Texts -> one L2-normalised float32 row per text (all-MiniLM-L6-v2: width 384)."""


class PhraseVectors:
    """Phrase -> embedding, filled by `ensure` and read by `matrix`."""

    def __init__(self) -> None:
        self._vectors: dict[str, np.ndarray] = {}

    def missing(self, phrases: Iterable[str]) -> list[str]:
        """The phrases not embedded yet, each once, in first-seen order."""
        return [p for p in dict.fromkeys(phrases) if p not in self._vectors]

    async def ensure(self, phrases: Iterable[str], embed: Embed) -> None:
        """Embed the phrases that have no vector yet (none: no call)."""
        todo = self.missing(phrases)
        if not todo:
            return
        rows = np.asarray(await embed(todo), dtype=np.float32)
        if rows.ndim != 2 or rows.shape[0] != len(todo):
            raise ValueError(f"embed returned shape {rows.shape} for {len(todo)} texts")
        for phrase, row in zip(todo, rows, strict=True):
            self._vectors[phrase] = row

    def matrix(self, phrases: Sequence[str]) -> np.ndarray | None:
        """The phrases' vectors as rows, in order; None while any is missing."""
        if not phrases or any(p not in self._vectors for p in phrases):
            return None
        return np.stack([self._vectors[p] for p in phrases])


def as_rows(embedding: np.ndarray | Sequence[float]) -> np.ndarray:
    """A request embedding (one vector, or one row per text) as a float32 matrix."""
    return np.atleast_2d(np.asarray(embedding, dtype=np.float32))
