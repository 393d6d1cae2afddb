"""The live state of each target: breaker, requests in flight, latency, failure streak."""

from __future__ import annotations

from gateway.routing.breaker import CircuitBreaker, Permit


class TargetState:
    """What the router knows about one target (`provider/model`) right now.

    One per distinct target, shared by every alias that lists it: a failing upstream model is
    the same failing model whichever alias reached it. Lives on the router's event loop.
    """

    def __init__(self, label: str, provider: str, breaker: CircuitBreaker, alpha: float) -> None:
        self.label = label
        self.provider = provider
        self.breaker = breaker
        self.in_flight = 0
        self.latency_ewma_ms: float | None = None
        self.consecutive_failures = 0
        self._alpha = alpha

    def observe_latency(self, ms: float) -> None:
        """Fold one time-to-answer (first chunk for streams) into the moving average."""
        if self.latency_ewma_ms is None:
            self.latency_ewma_ms = ms
        else:
            self.latency_ewma_ms += self._alpha * (ms - self.latency_ewma_ms)


class Attempt:
    """One call in flight to a target: counts it as busy until `finish` says how it went."""

    def __init__(self, target: TargetState, permit: Permit) -> None:
        self.target = target
        self._permit = permit
        self._open = True
        target.in_flight += 1

    def succeeded(self) -> None:
        """The target answered in full."""
        if self._end():
            self.target.consecutive_failures = 0
            self.target.breaker.record_success(self._permit)

    def failed(self) -> None:
        """The target failed in a way that counts against it (see retry.py)."""
        if self._end():
            self.target.consecutive_failures += 1
            self.target.breaker.record_failure(self._permit)

    def abandoned(self) -> None:
        """The call ended with no verdict on the target (cancelled, or the request's fault)."""
        if self._end():
            self.target.breaker.release(self._permit)

    def _end(self) -> bool:
        if not self._open:
            return False
        self._open = False
        self.target.in_flight -= 1
        return True
