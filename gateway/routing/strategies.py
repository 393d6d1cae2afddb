"""Route strategies: the order in which an alias's targets are tried for one request.

Whatever the strategy, the whole list is returned: the first entry is the pick, the rest are
the fallback chain in order. Ties keep the configured order, so `priority` is also every other
strategy's tie-breaker.

* `priority`: the configured order (a fallback chain).
* `weighted`: a weighted shuffle; each target comes first with probability weight / total,
  and so on down the list (weight 0: last, in configured order).
* `least_latency`: lowest moving average time-to-answer first; a target never measured comes
  first, so that it gets measured.
* `least_busy`: fewest requests in flight from this router first.
* `cost`: cheapest first by `PriceLookup` (input + output per million); unpriced last.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from gateway.routing.config import Target
from gateway.routing.pricing import PriceLookup, blended_per_mtok
from gateway.routing.targets import TargetState

StrategyName = Literal["priority", "weighted", "least_latency", "least_busy", "cost"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A target of an alias (as configured) with its live state."""

    target: Target
    state: TargetState


class Strategy(Protocol):
    """Orders an alias's candidates for one request; returns every one of them."""

    def order(self, candidates: list[Candidate]) -> list[Candidate]: ...


class Priority:
    """The configured order."""

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        return list(candidates)


class Weighted:
    """A weighted random order (Efraimidis-Spirakis: sort by u ** (1 / weight)).

    That key gives each remaining target the next place with probability proportional to its
    weight, so the fallback chain is weighted too, at the cost of one draw per target.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        def key(candidate: Candidate) -> float:
            weight = candidate.target.weight
            if weight <= 0:
                return -math.inf
            # 1 - random() lies in (0, 1]: a zero draw would tie every weight at 0.
            return (1.0 - self._rng.random()) ** (1.0 / weight)

        keys = [key(c) for c in candidates]
        ranked = sorted(range(len(candidates)), key=lambda i: -keys[i])
        return [candidates[i] for i in ranked]


class LeastLatency:
    """Lowest latency moving average first; unmeasured targets before measured ones."""

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        def key(candidate: Candidate) -> float:
            ewma = candidate.state.latency_ewma_ms
            return -1.0 if ewma is None else ewma

        return sorted(candidates, key=key)


class LeastBusy:
    """Fewest requests in flight first."""

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        return sorted(candidates, key=lambda c: c.state.in_flight)


class Cheapest:
    """Lowest blended price first; targets without a price after every priced one."""

    def __init__(self, prices: PriceLookup) -> None:
        self._prices = prices

    def order(self, candidates: list[Candidate]) -> list[Candidate]:
        def key(candidate: Candidate) -> float:
            price = self._prices(candidate.target)
            return math.inf if price is None else blended_per_mtok(price)

        return sorted(candidates, key=key)


def strategy_for(name: StrategyName, *, rng: random.Random, prices: PriceLookup) -> Strategy:
    """The strategy a config names."""
    makers: dict[str, Callable[[], Strategy]] = {
        "priority": Priority,
        "weighted": lambda: Weighted(rng),
        "least_latency": LeastLatency,
        "least_busy": LeastBusy,
        "cost": lambda: Cheapest(prices),
    }
    return makers[name]()
