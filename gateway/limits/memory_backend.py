"""Rate-limit buckets in this process: the embedded default, or when no Redis is configured.

Limits then hold per replica only. Calls are atomic because nothing in them awaits; use one
`MemoryBackend` from one event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from gateway.limits.backend import Acquisition, Charge

_SWEEP_EVERY = 4096  # acquisitions between sweeps of full (forgettable) buckets


class MemoryBackend:
    """GCRA buckets in a dict; `clock` (seconds, monotonic) is injectable for tests."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._until_sweep = _SWEEP_EVERY

    def _now_us(self) -> int:
        return int(self._clock() * 1_000_000)

    async def acquire(self, charges: Sequence[Charge]) -> Acquisition:
        """Apply every charge if each fits, else none (see `RateBackend.acquire`)."""
        now = self._now_us()
        backlogs = tuple(max(self._tats.get(c.key, 0) - now, 0) for c in charges)
        allowed = all(
            b + c.cost_us <= c.tolerance_us for b, c in zip(backlogs, charges, strict=True)
        )
        if allowed:
            for backlog, charge in zip(backlogs, charges, strict=True):
                self._tats[charge.key] = now + backlog + charge.cost_us
        self._until_sweep -= 1
        if self._until_sweep <= 0:
            self._sweep(now)
        return Acquisition(allowed, backlogs)

    async def adjust(self, shifts: Sequence[tuple[str, int]]) -> None:
        """Shift TATs by signed µs, never below now (see `RateBackend.adjust`)."""
        now = self._now_us()
        for key, shift in shifts:
            after = max(self._tats.get(key, 0) - now, 0) + shift
            if after > 0:
                self._tats[key] = now + after
            else:
                self._tats.pop(key, None)

    async def close(self) -> None:
        """Nothing to release."""

    def _sweep(self, now: int) -> None:
        # A bucket whose TAT has passed is full: forgetting it changes nothing.
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._until_sweep = _SWEEP_EVERY
