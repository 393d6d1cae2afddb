"""The meter on the request path: rate limits and budgets before the call, cost after it.

    allowance = await meter.admit(principal, alias, targets, prompt_tokens, max_tokens)
    ...the upstream call...
    cost = await meter.settle(allowance, route_label, usage)   # or: await meter.cancel(...)

A refused request raises RateLimited (429, with Retry-After and x-ratelimit-* headers),
QuotaExceeded (429 insufficient_quota) or RateLimitStoreUnavailable (503, fail-closed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.accounting.budgets import BudgetLedger, Reservation
from gateway.accounting.pricing import PriceTable, TokenUsage, usage_tokens
from gateway.identity.principal import Principal
from gateway.limits.limiter import LimitDecision, RateLimiter

# Without `max_tokens`, a completion is assumed this long for limits and reservations; the
# real usage replaces the assumption once the answer is in.
DEFAULT_COMPLETION_TOKENS = 512


@dataclass
class Allowance:
    """What `admit` granted, to be settled or cancelled exactly once."""

    decision: LimitDecision | None
    reservation: Reservation | None
    estimate_usd: float
    headers: dict[str, str] = field(default_factory=dict)
    done: bool = False


class Meter:
    """Rate limits, budgets and prices for one ingress replica."""

    def __init__(
        self, prices: PriceTable, limiter: RateLimiter | None, ledger: BudgetLedger | None
    ) -> None:
        self.prices = prices
        self._limiter = limiter
        self._ledger = ledger

    async def admit(
        self,
        principal: Principal,
        alias: str,
        targets: Sequence[str],
        prompt_tokens: int,
        max_tokens: int | None,
    ) -> Allowance:
        """Check the caller's rate limits and reserve the dearest target's estimated cost."""
        completion = DEFAULT_COMPLETION_TOKENS if max_tokens is None else max_tokens
        decision = None
        if self._limiter is not None:
            decision = await self._limiter.check(
                principal, alias, tokens_estimate=prompt_tokens + completion
            )
        estimate = self.prices.estimate(targets, prompt_tokens, completion)
        reservation = None
        if self._ledger is not None:
            try:
                reservation = await self._ledger.reserve(principal, estimate)
            except BaseException:
                if decision is not None and self._limiter is not None:
                    await self._limiter.record_tokens(decision, 0)
                raise
        headers = decision.headers() if decision is not None else {}
        return Allowance(decision, reservation, estimate, headers)

    async def settle(
        self, allowance: Allowance, route_label: str | None, usage: TokenUsage | None
    ) -> float | None:
        """Charge the real cost (None when the model has no known price or no usage came);
        without usage, the reservation's estimate stands, since the provider still charged."""
        if allowance.done:
            return None
        allowance.done = True
        cost = None
        if route_label is not None and usage is not None:
            cost = self.prices.cost_of_usage(route_label, usage)
        if self._ledger is not None and allowance.reservation is not None:
            charged = cost if cost is not None else allowance.estimate_usd
            await self._ledger.settle(allowance.reservation, charged)
        if self._limiter is not None and allowance.decision is not None and usage is not None:
            prompt, completion, _ = usage_tokens(usage)
            await self._limiter.record_tokens(allowance.decision, prompt + completion)
        return cost

    async def cancel(self, allowance: Allowance) -> None:
        """Nothing was answered: give back the reservation and the tokens."""
        if allowance.done:
            return
        allowance.done = True
        if self._ledger is not None and allowance.reservation is not None:
            await self._ledger.release(allowance.reservation)
        if self._limiter is not None and allowance.decision is not None:
            await self._limiter.record_tokens(allowance.decision, 0)

    async def aclose(self) -> None:
        if self._limiter is not None:
            await self._limiter.close()
