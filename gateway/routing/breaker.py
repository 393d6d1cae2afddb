"""A circuit breaker per target: stop sending traffic to a target that keeps failing.

closed: every request passes; outcomes fill a rolling time window. Once the window holds at
least `min_requests` outcomes and the failure share reaches `failure_rate`, the breaker opens.

open: nothing passes until `cooldown` has elapsed; then the breaker is half-open. Each time a
probe fails the cooldown grows (`cooldown_multiplier`, up to `max_cooldown`); a close resets it.

half-open: up to `half_open_probes` requests pass at once. The first success closes the breaker
with an empty window; a failure opens it again.

Outcomes carry the `Permit` they were let through with, and count only while the breaker is
still in the state (the epoch) that admitted them: a slow request from before a trip cannot
close or re-open a breaker that has moved on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gateway.routing.config import BreakerPolicy


class BreakerState(StrEnum):
    """Where a breaker stands."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class Transition:
    """A breaker changed state at `at` (the router's clock) for `reason`."""

    target: str
    before: BreakerState
    after: BreakerState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Permit:
    """A breaker's leave for one request; hand it back with the request's outcome."""

    epoch: int
    probe: bool


class CircuitBreaker:
    """The breaker of one target. Not thread-safe: it lives on the router's event loop."""

    def __init__(
        self,
        target: str,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float],
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.target = target
        self._policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.CLOSED
        self._epoch = 0
        self._window: deque[tuple[float, bool]] = deque()  # (when, failed)
        self._failures = 0
        self._opened_at = 0.0
        self._open_for = policy.cooldown
        self._cooldown = policy.cooldown
        self._probes = 0
        self.trips = 0
        self.open_reason: str | None = None

    # --- reading ------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now; an open breaker whose cooldown has passed reads as half-open."""
        self._advance()
        return self._state

    def failure_rate(self) -> float:
        """The failure share of the outcomes in the rolling window (0 when it is empty)."""
        self._prune()
        return self._failures / len(self._window) if self._window else 0.0

    def window_requests(self) -> int:
        """How many outcomes the rolling window holds."""
        self._prune()
        return len(self._window)

    def next_probe_at(self) -> float | None:
        """When an open breaker will admit its first probe, on the router's clock."""
        if self.state is not BreakerState.OPEN:
            return None
        return self._opened_at + self._open_for

    # --- permits and outcomes ---------------------------------------------------------------

    def admit(self) -> Permit | None:
        """Leave for one request, or None while open or while every probe slot is taken."""
        state = self.state
        if state is BreakerState.CLOSED:
            return Permit(self._epoch, probe=False)
        if state is BreakerState.HALF_OPEN and self._probes < self._policy.half_open_probes:
            self._probes += 1
            return Permit(self._epoch, probe=True)
        return None

    def admit_early(self) -> Permit | None:
        """Like `admit`, but an open breaker goes half-open now to admit this request as its
        probe. For a request that no target could otherwise take: one probe at a time still
        finds out whether the target is back, where waiting out the cooldown would only
        fail the request."""
        if self.state is BreakerState.OPEN:
            self._move(BreakerState.HALF_OPEN, "probed_early")
        return self.admit()

    def record_success(self, permit: Permit) -> None:
        """The admitted request succeeded."""
        if not self._current(permit):
            return
        if permit.probe:
            self._probes -= 1
            self._close("probe_succeeded")
            return
        self._observe(failed=False)

    def record_failure(self, permit: Permit) -> None:
        """The admitted request failed in a way that counts against the target."""
        if not self._current(permit):
            return
        if permit.probe:
            self._probes -= 1
            self._cooldown = min(
                self._cooldown * self._policy.cooldown_multiplier, self._policy.max_cooldown
            )
            self._open("probe_failed", self._cooldown)
            return
        self._observe(failed=True)
        policy = self._policy
        if len(self._window) >= policy.min_requests:
            if self._failures / len(self._window) >= policy.failure_rate:
                self._open("failure_rate", self._cooldown)

    def release(self, permit: Permit) -> None:
        """The admitted request ended without a verdict on the target (cancelled, or refused
        for a reason of its own): frees its probe slot, counts nothing."""
        if self._current(permit) and permit.probe:
            self._probes -= 1

    # --- forced changes -----------------------------------------------------------------------

    def trip(self, reason: str, cooldown: float | None = None) -> None:
        """Open now (a failed health check, a passive ejection) for `cooldown` seconds, or for
        the current cooldown. An already open breaker stays open at least as long as before."""
        open_for = self._cooldown if cooldown is None else cooldown
        if self.state is BreakerState.OPEN:
            until = max(self._opened_at + self._open_for, self._clock() + open_for)
            self._open_for = until - self._opened_at
            self.open_reason = reason
            return
        self._open(reason, open_for)

    def probe_now(self, reason: str) -> None:
        """Skip the rest of an open breaker's cooldown (its target passed a health check)."""
        if self.state is BreakerState.OPEN:
            self._move(BreakerState.HALF_OPEN, reason)

    # --- internals ----------------------------------------------------------------------------

    def _current(self, permit: Permit) -> bool:
        return permit.epoch == self._epoch

    def _observe(self, *, failed: bool) -> None:
        self._window.append((self._clock(), failed))
        self._failures += failed
        self._prune()

    def _prune(self) -> None:
        horizon = self._clock() - self._policy.window
        while self._window and self._window[0][0] <= horizon:
            _, failed = self._window.popleft()
            self._failures -= failed

    def _advance(self) -> None:
        # Noticed lazily, on the next read; dated when the cooldown actually ran out.
        probe_at = self._opened_at + self._open_for
        if self._state is BreakerState.OPEN and self._clock() >= probe_at:
            self._move(BreakerState.HALF_OPEN, "cooldown_elapsed", at=probe_at)

    def _open(self, reason: str, open_for: float) -> None:
        self._opened_at = self._clock()
        self._open_for = open_for
        self.open_reason = reason
        self.trips += 1
        self._move(BreakerState.OPEN, reason)

    def _close(self, reason: str) -> None:
        self._cooldown = self._policy.cooldown
        self.open_reason = None
        self._move(BreakerState.CLOSED, reason)

    def _move(self, after: BreakerState, reason: str, *, at: float | None = None) -> None:
        before = self._state
        self._state = after
        self._epoch += 1
        self._probes = 0
        # Each state judges the target afresh: a closed breaker starts from an empty window.
        self._window.clear()
        self._failures = 0
        if self._on_transition is not None:
            when = self._clock() if at is None else at
            self._on_transition(Transition(self.target, before, after, reason, when))
