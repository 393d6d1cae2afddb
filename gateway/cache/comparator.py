"""Answer comparisons for the learned phase, with the cache's embedder.

`stored` compares two entries' answers from their stored vectors (inserts learn from it, no
model call); `fresh` compares an entry's answer with a fresh one (explorations), taking a
judge's verdict when the caller brings one. Fresh answers' vectors are kept briefly, so the insert
that usually follows an exploration does not embed the same answer again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import numpy as np

from gateway.cache.equivalence import (
    Comparison,
    answer_text,
    compare_answers,
    embedded_form,
    needs_vectors,
)
from gateway.cache.store import Entry

_RECENT_VECTORS = 512


class Comparator:
    """Decides whether two answers agree (see `equivalence`)."""

    def __init__(
        self,
        embed: Callable[[list[str]], Awaitable[np.ndarray]],
        threshold: float,
    ) -> None:
        self._embed = embed
        self.threshold = threshold
        self._recent: OrderedDict[str, np.ndarray] = OrderedDict()

    async def answer_vector(self, answer: str) -> np.ndarray | None:
        """The vector an answer is compared by; None for short or structured answers, which
        are compared as text."""
        if not needs_vectors(answer, answer):
            return None
        key = hashlib.blake2b(answer.encode(), digest_size=16).hexdigest()
        vector = self._recent.get(key)
        if vector is None:
            vector = np.asarray((await self._embed([embedded_form(answer)]))[0], dtype=np.float32)
            self._recent[key] = vector
            while len(self._recent) > _RECENT_VECTORS:
                self._recent.popitem(last=False)
        return vector

    def stored(self, a: Entry, b: Entry) -> Comparison:
        """Two entries' answers, compared by the rules from their stored vectors."""
        text_a, text_b = answer_text(a.response), answer_text(b.response)
        if needs_vectors(text_a, text_b) and (a.answer_vector is None or b.answer_vector is None):
            return Comparison(False, "none", "an answer has no stored vector")
        return compare_answers(
            text_a, text_b, a.answer_vector, b.answer_vector, threshold=self.threshold
        )

    async def fresh(self, entry: Entry, fresh: str, *, verdict: bool | None = None) -> Comparison:
        """An entry's stored answer against a fresh answer to its question: a judge's
        `verdict` when the caller brings one (the request path's judge model), else the
        rules."""
        cached = answer_text(entry.response)
        if verdict is not None:
            return Comparison(verdict, "judge", "the judge said so")
        if not needs_vectors(cached, fresh):
            return compare_answers(cached, fresh, None, None, threshold=self.threshold)
        stored = entry.answer_vector
        if stored is None:
            stored = await self.answer_vector(cached)
        return compare_answers(
            cached, fresh, stored, await self.answer_vector(fresh), threshold=self.threshold
        )
