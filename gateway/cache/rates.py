"""How often a candidate at a given similarity turned out wrong, per model alias and kind.

One `AliasRates` pools every observation of one alias (single questions and conversations
apart: their similarities mean different things) into 0.01-wide similarity bins over a
sliding window of time. Its `rate(s)` is the share of wrong candidates at similarity `s`:
observed counts shrunk towards a prior that encodes the static threshold (wrong below it,
right above it), then made non-increasing in similarity (a closer candidate is never more
likely wrong), so that a cold alias behaves exactly like the static cache and data moves it.
An alias keeps one `AliasRates` per margin class of its candidates (`margin_class`) beside the
pooled one (`POOLED`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

LOW = 0.5  # similarities below this share the first bin
BINS = 50
_WIDTH = (1.0 - LOW) / BINS
# Pseudo-observations of the prior per bin: how much data it takes to move an alias off it.
PRIOR_WEIGHT = 2.0
# The prior's wrong rate below the static threshold: a coin flip, i.e. "not known to be safe".
PRIOR_BELOW = 0.5
# Width (in bins, a Gaussian's standard deviation) over which bins share their counts.
SMOOTHING_BINS = 1.5
# Margin classes (a candidate's lead in cosine over the nearest candidate with another
# answer): contested below the first edge, clear from the last one or with no such rival.
# Coarse on purpose: they only decide which rates a candidate is read against.
MARGIN_EDGES = (0.05, 0.15)
CLEAR = len(MARGIN_EDGES)
POOLED = -1  # the rates of every class together


def bin_of(similarity: float) -> int:
    """The bin holding `similarity` (clipped to the grid)."""
    return int(min(BINS - 1, max(0, (similarity - LOW) // _WIDTH)))


def bin_low(index: int) -> float:
    """The lowest similarity of bin `index`."""
    return LOW + index * _WIDTH


@dataclass
class AliasRates:
    """Windowed wrong/total counts per similarity bin for one (alias, kind)."""

    window_s: float
    wrong: np.ndarray = field(default_factory=lambda: np.zeros(BINS))
    total: np.ndarray = field(default_factory=lambda: np.zeros(BINS))
    squares: np.ndarray = field(default_factory=lambda: np.zeros(BINS))  # weights squared
    _events: deque[tuple[float, int, float, float]] = field(default_factory=deque)
    _fitted: dict[tuple[float, float, int | None], np.ndarray] = field(default_factory=dict)
    _version: int = 0

    def add(self, similarity: float, wrong: bool, at: float, weight: float = 1.0) -> None:
        """Count one observation made at time `at`, standing for `weight` candidates."""
        index = bin_of(similarity)
        self._events.append((at, index, wrong * weight, weight))
        self.total[index] += weight
        self.wrong[index] += wrong * weight
        self.squares[index] += weight * weight
        self._version += 1
        self._fitted.clear()

    def expire(self, now: float) -> None:
        """Forget observations older than the window (the log's compaction drops them too)."""
        changed = False
        while self._events and self._events[0][0] < now - self.window_s:
            _, index, wrong, weight = self._events.popleft()
            self.total[index] -= weight
            self.wrong[index] -= wrong
            self.squares[index] -= weight * weight
            changed = True
        if changed:
            self._version += 1
            self._fitted.clear()

    @property
    def observations(self) -> int:
        return int(self.total.sum())

    def evidence(self, similarity: float) -> float:
        """How much of the estimate at `similarity` rests on data rather than on the prior:
        effective observations / (effective observations + the prior's weight), in [0, 1)."""
        index = bin_of(similarity)
        total, squares = _smooth(self.total)[index], _smooth(self.squares)[index]
        effective = total**2 / squares if squares > 0 else 0.0
        return float(effective / (effective + PRIOR_WEIGHT))

    def rate(
        self,
        similarity: float,
        *,
        static_threshold: float,
        bound: float,
        within: AliasRates | None = None,
    ) -> float:
        """The estimated share of wrong candidates at `similarity`. With `within` (the rates
        of a wider group these are a part of), the data are shrunk towards that group's
        estimate instead of the static prior: a part with few observations reads like the
        whole, and its own data move it."""
        return float(self.fitted(static_threshold, bound, within)[bin_of(similarity)])

    def fitted(
        self, static_threshold: float, bound: float, within: AliasRates | None = None
    ) -> np.ndarray:
        """The estimated share of wrong candidates per bin (see `rate`)."""
        key = (static_threshold, bound, None if within is None else within.version)
        fitted = self._fitted.get(key)
        if fitted is None:
            if len(self._fitted) > 8:  # a wider group's older versions
                self._fitted.clear()
            prior = None if within is None else within.fitted(static_threshold, bound)
            fitted = self._fitted[key] = self._fit(static_threshold, bound, prior)
        return fitted

    @property
    def version(self) -> int:
        """Changes whenever the counts do (what a part's fit that shrinks towards these
        rates is keyed by)."""
        return self._version

    def _fit(
        self, static_threshold: float, bound: float, prior: np.ndarray | None = None
    ) -> np.ndarray:
        lows = LOW + _WIDTH * np.arange(BINS)
        # Above the static threshold the prior is "safe": a quarter of the bound, so that a
        # cold alias serves there as the static cache does, until wrong answers show up.
        if prior is None:
            prior = np.where(lows >= static_threshold - 1e-9, bound / 4, PRIOR_BELOW)
        # Neighbouring bins lend each other their counts, so that the few observations above
        # the static threshold (only shadow calls reach there) are read with those just below.
        wrong, total, squares = _smooth(self.wrong), _smooth(self.total), _smooth(self.squares)
        # A weighted observation (a shadow call standing for 1 / rate served candidates) moves
        # the mean by its weight but is one observation's worth of evidence: the data count
        # for their effective sample size, (sum of weights)^2 / sum of squared weights.
        observed = np.divide(wrong, total, out=np.zeros(BINS), where=total > 0)
        effective = np.divide(total**2, squares, out=np.zeros(BINS), where=squares > 0)
        weight = PRIOR_WEIGHT + effective
        raw = (PRIOR_WEIGHT * prior + effective * observed) / weight
        return _decreasing(raw, weight)


_KERNEL = np.exp(-0.5 * (np.arange(-4, 5) / SMOOTHING_BINS) ** 2)


def _smooth(counts: np.ndarray) -> np.ndarray:
    return np.convolve(counts, _KERNEL, mode="same")


def _decreasing(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares fit that does not increase with the index (pool adjacent
    violators), so that a bin never claims more risk than a less similar one."""
    blocks: list[list[float]] = []  # [mean, weight, length]
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            mean2, weight2, length2 = blocks.pop()
            mean1, weight1, length1 = blocks.pop()
            total = weight1 + weight2
            blocks.append([(mean1 * weight1 + mean2 * weight2) / total, total, length1 + length2])
    return np.concatenate([np.full(int(length), mean) for mean, _, length in blocks])


def margin_class(margin: float | None) -> int:
    """The margin class of a candidate's lead (`CLEAR` without a rival)."""
    if margin is None:
        return CLEAR
    return sum(margin >= edge for edge in MARGIN_EDGES)
