"""A neighbourhood of the learned cache: entries whose stored answers agree, and what was
observed around any of them (`learning.Learner` combines it with the alias's rates).

An observation is a candidate at some similarity whose cached answer turned out right or
wrong against a fresh one. A right answer at similarity s' <= s supports serving at s, a wrong
one at s' >= s speaks against it; nearer ones count with an exponential kernel of `KERNEL`.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

# How far (in cosine) an observation's evidence reaches past the similarity it was made at.
KERNEL = 0.02
# Observations kept per neighbourhood (the most recent).
MAX_OBSERVATIONS = 256


@dataclass
class Neighbourhood:
    """Entries whose stored answers agree, and what was observed around any of them."""

    members: set[int] = field(default_factory=set)  # live entries
    ids: set[int] = field(default_factory=set)  # every id whose parent chain leads here
    observations: OrderedDict[str, tuple[float, bool]] = field(default_factory=OrderedDict)
    _arrays: tuple[np.ndarray, np.ndarray] | None = None

    def record(self, pair: str, similarity: float, equivalent: bool) -> None:
        self.observations.pop(pair, None)
        self.observations[pair] = (similarity, equivalent)
        while len(self.observations) > MAX_OBSERVATIONS:
            self.observations.popitem(last=False)
        self._arrays = None

    def evidence(self, similarity: float) -> tuple[float, float]:
        """(weight of wrong answers at or above `similarity`, of right ones at or below)."""
        if not self.observations:
            return 0.0, 0.0
        if self._arrays is None:
            values = list(self.observations.values())
            self._arrays = (
                np.array([s for s, _ in values]),
                np.array([ok for _, ok in values], dtype=bool),
            )
        sims, ok = self._arrays
        wrong = np.where(sims >= similarity, 1.0, np.exp(-(similarity - sims) / KERNEL))
        right = np.where(sims <= similarity, 1.0, np.exp(-(sims - similarity) / KERNEL))
        return float(wrong[~ok].sum()), float(right[ok].sum())
