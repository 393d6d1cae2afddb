"""The learned phase's error budget: lookups counted, candidates' risks, the serving cutoff.

The operator's bound is a share of lookups: `bound * lookups` wrong answers are allowed. Each
replica counts its lookups and the estimated risks of the candidates it decided on
(`TrafficMeter`); the counts travel through the entry log as `traffic` rows, so that every
replica budgets on everyone's traffic, and add up per alias and kind in `AliasTraffic`, whose
`cutoff` is the highest risk worth serving. `HourlyBudget` caps what a replica spends on
extra upstream calls: shadow explorations, pre-cached follow-ups.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

# Candidate risks are binned on a log scale from RISK_LOW to 1.
RISK_LOW = 1e-4
RISK_BINS = 48


def risk_bin(risk: float) -> int:
    """The bin of a candidate's estimated risk."""
    if risk <= RISK_LOW:
        return 0
    position = np.log(risk / RISK_LOW) / np.log(1.0 / RISK_LOW) * (RISK_BINS - 1)
    return int(min(RISK_BINS - 1, max(0, np.ceil(position))))


def risk_edge(index: int) -> float:
    """The highest risk that bin `index` holds."""
    return float(RISK_LOW * (1.0 / RISK_LOW) ** (index / (RISK_BINS - 1)))


@dataclass
class AliasTraffic:
    """Windowed lookups and decided candidates' risks for one (alias, kind): what the error
    budget is spent on.

    The bound is a share of lookups: `bound * lookups` wrong answers are allowed. Serving
    every candidate up to a risk `cutoff` costs the sum of their risks; `cutoff` is the
    highest risk at which that sum, over the recent candidates, stays within `share` of the
    allowance, so the budget goes to the safest candidates first.
    """

    window_s: float
    lookups: float = 0.0
    count: np.ndarray = field(default_factory=lambda: np.zeros(RISK_BINS))
    spent: np.ndarray = field(default_factory=lambda: np.zeros(RISK_BINS))
    served: float = 0.0  # risks of the candidates actually served, summed: errors expected
    _events: deque[tuple[float, float, np.ndarray, np.ndarray, float]] = field(
        default_factory=deque
    )
    _cutoff: dict[tuple[float, float], float] = field(default_factory=dict)

    def add(
        self, at: float, lookups: float, count: np.ndarray, spent: np.ndarray, served: float
    ) -> None:
        """Count a batch: lookups, decided candidates (per risk bin: how many, risk summed)
        and the summed risk of those served."""
        self._events.append((at, lookups, count, spent, served))
        self.lookups += lookups
        self.count += count
        self.spent += spent
        self.served += served
        self._cutoff.clear()

    def expire(self, now: float) -> None:
        """Forget batches older than the window."""
        while self._events and self._events[0][0] < now - self.window_s:
            _, lookups, count, spent, served = self._events.popleft()
            self.lookups -= lookups
            self.count -= count
            self.spent -= spent
            self.served -= served
            self._cutoff.clear()

    def cutoff(self, bound: float, share: float) -> float:
        """The highest candidate risk worth serving under `bound` (0 with no traffic yet, or
        once the errors expected from what was served reach the planned share)."""
        key = (bound, share)
        if key not in self._cutoff:
            allowance = bound * share * self.lookups
            cumulative = np.cumsum(self.spent)
            within = np.nonzero(cumulative <= allowance)[0]
            planned = risk_edge(int(within[-1])) if len(within) else 0.0
            self._cutoff[key] = 0.0 if self.served >= allowance else planned
        return self._cutoff[key]


# (alias, kind, lookups, decided candidates' risks, summed risk of those served)
Traffic = tuple[str, str, int, list[float], float]


class TrafficMeter:
    """One replica's counts since they were last shipped (`drain`)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], tuple[int, list[float], float]] = {}

    def lookup(self, model: str, kind: str, count: int = 1) -> None:
        """Count `count` lookups of (`model`, `kind`)."""
        lookups, risks, spent = self._pending.get((model, kind), (0, [], 0.0))
        self._pending[(model, kind)] = (lookups + count, risks, spent)

    def candidate(self, model: str, kind: str, risk: float, *, served: bool) -> None:
        """Count one decided candidate, its risk, and whether it was served."""
        lookups, risks, spent = self._pending.get((model, kind), (0, [], 0.0))
        risks.append(risk)
        self._pending[(model, kind)] = (lookups, risks, spent + (risk if served else 0.0))

    def drain(self) -> list[Traffic]:
        """Everything counted since the last drain, per (alias, kind)."""
        drained = [(m, k, n, r, spent) for (m, k), (n, r, spent) in self._pending.items()]
        self._pending.clear()
        return drained


class HourlyBudget:
    """At most `per_hour` uses in any sliding hour (one replica's): shadow explorations,
    pre-cached follow-ups."""

    def __init__(self, per_hour: int, clock: Callable[[], float]) -> None:
        self.per_hour = per_hour
        self._clock = clock
        self._taken: deque[float] = deque()

    def take(self) -> bool:
        """Spend one use if the budget allows it."""
        now = self._clock()
        while self._taken and self._taken[0] <= now - 3600.0:
            self._taken.popleft()
        if len(self._taken) >= self.per_hour:
            return False
        self._taken.append(now)
        return True
