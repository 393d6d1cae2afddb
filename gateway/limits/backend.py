"""What a rate-limit store does: GCRA over many buckets at once, all or nothing.

Each bucket is one limit ("user:alice:requests", 60 per minute) kept as a single number, its
theoretical arrival time (TAT): the moment the bucket will be full again. A request that costs
n units pushes the TAT n * (60 s / limit) into the future, and fits when the TAT then lies at
most 60 s ahead of now. This is a token bucket of `limit` units refilled continuously (what
OpenAI's own limits do), with O(1) state per bucket, exact retry-after times, and post-hoc
correction of a token estimate as a signed shift of the TAT.

All times are integer microseconds: sums of charges are then exact, so a limit of k admits
exactly k, never k - 1 through rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

WINDOW_US = 60_000_000
"""Every limit is per minute: a full bucket holds one minute of its rate."""


class StoreUnavailable(Exception):
    """The rate-limit store could not be reached; the limiter applies its failure mode."""


@dataclass(frozen=True)
class Charge:
    """One bucket's part of a request: how far it moves the bucket's TAT (µs), and how far
    ahead of now the TAT may lie (µs) for the request to fit."""

    key: str
    cost_us: int
    tolerance_us: int = WINDOW_US


@dataclass(frozen=True)
class Acquisition:
    """The store's answer: whether every charge fitted (and so was applied; else none was),
    and each bucket's backlog before this request (TAT - now, µs, never negative)."""

    allowed: bool
    backlogs_us: tuple[int, ...]


class RateBackend(Protocol):
    """A store of bucket TATs. Implementations are atomic per call across all their users."""

    async def acquire(self, charges: Sequence[Charge]) -> Acquisition:
        """Apply every charge if each fits, else none. Raises StoreUnavailable."""
        ...

    async def adjust(self, shifts: Sequence[tuple[str, int]]) -> None:
        """Shift buckets' TATs by signed µs (never below now: a bucket holds at most full).
        Raises StoreUnavailable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def cost_us(units: int, per_minute: int) -> int:
    """µs that `units` move a bucket limited to `per_minute` (rounded toward zero, so that
    `per_minute` units always fit a full bucket)."""
    magnitude = abs(units) * WINDOW_US // per_minute
    return magnitude if units >= 0 else -magnitude
