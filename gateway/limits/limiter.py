"""Requests and tokens per minute, per API key, user, group and model.

    decision = await limiter.check(principal, model, tokens_estimate=n)   # RateLimited if over
    ...call upstream...
    await limiter.record_tokens(decision, usage.total_tokens)  # 0 when the call failed
    response.headers.update(decision.headers())                # x-ratelimit-*

`check` charges one request and `tokens_estimate` tokens to every limit that applies, all or
none; `record_tokens` replaces the estimate by the real count once it is known. The counters
live in a `RateBackend`: Redis for limits shared by every replica, in-process otherwise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from gateway.errors import GatewayError, RateLimited
from gateway.identity.principal import Principal
from gateway.limits.backend import WINDOW_US, Charge, RateBackend, StoreUnavailable, cost_us
from gateway.limits.config import Rate, RateLimitsConfig
from gateway.limits.memory_backend import MemoryBackend
from gateway.limits.redis_backend import RedisBackend

log = logging.getLogger(__name__)

Dimension = Literal["requests", "tokens"]


class RateLimitStoreUnavailable(GatewayError):
    """The shared rate-limit store is down and `failure_mode` is closed: refuse (503)."""

    status = 503
    type = "api_error"
    default_code = "rate_limit_store_unavailable"


@dataclass(frozen=True)
class LimitState:
    """The tightest limit of one dimension, as OpenAI's x-ratelimit-* headers show it."""

    limit: int
    remaining: int
    reset_s: float  # until the limit is back to its full allowance


@dataclass(frozen=True)
class LimitDecision:
    """An admitted request: what its limits look like now, and what to correct later.

    `requests` / `tokens` are None when no limit of that kind applies. `store_available` is
    False when the store was down and `failure_mode: open` let the request through unchecked.
    """

    requests: LimitState | None = None
    tokens: LimitState | None = None
    tokens_estimate: int = 0
    store_available: bool = True
    token_buckets: tuple[tuple[str, int], ...] = ()  # (bucket key, tokens per minute)

    def headers(self) -> dict[str, str]:
        """OpenAI's `x-ratelimit-*` response headers for the limits that apply."""
        return _headers(self.requests, self.tokens)


@dataclass(frozen=True)
class _Rule:
    key: str  # the bucket: "user:alice:tokens"
    per_minute: int
    dimension: Dimension
    describes: str  # "user 'alice'", for a refusal's message


class RateLimiter:
    """Applies `RateLimitsConfig` with counters in `backend`."""

    def __init__(self, config: RateLimitsConfig, backend: RateBackend) -> None:
        self._config = config
        self._backend = backend
        self.store_failures = 0
        """Checks and corrections that found the store unreachable (for metrics)."""
        self._last_warning: float | None = None

    @classmethod
    def from_config(
        cls, config: RateLimitsConfig, *, clock: Callable[[], float] | None = None
    ) -> RateLimiter:
        """A limiter on Redis when `config.store.url` is set, else on in-process counters.
        `clock` (seconds) replaces the store's time, for tests."""
        backend: RateBackend
        if config.store.url is not None:
            backend = RedisBackend.from_config(config.store, clock=clock)
        else:
            backend = MemoryBackend(clock=clock or time.monotonic)
        return cls(config, backend)

    async def close(self) -> None:
        """Release the store's connections."""
        await self._backend.close()

    async def check(
        self, principal: Principal, model: str, *, tokens_estimate: int
    ) -> LimitDecision:
        """Admit one request of about `tokens_estimate` tokens (prompt + max completion), or
        raise RateLimited, whose headers carry `retry-after` / `retry-after-ms` (when it may
        be retried) and the x-ratelimit-* values. A request is charged to every limit that
        applies or, when refused, to none.

        With the store unreachable: `failure_mode: open` admits the request (warning logged
        at most once per `warn_interval_s`, `store_failures` counted); `closed` raises
        RateLimitStoreUnavailable (503, code `rate_limit_store_unavailable`).
        """
        tokens_estimate = max(0, tokens_estimate)
        rules = self._rules(principal, model)
        if not rules:
            return LimitDecision(tokens_estimate=tokens_estimate)
        for rule in rules:
            if rule.dimension == "tokens" and tokens_estimate > rule.per_minute:
                # No wait would make it fit: say so rather than name a retry time.
                raise RateLimited(
                    f"Request too large for {rule.describes}: about {tokens_estimate} tokens"
                    f" asked, limit {rule.per_minute} tokens per minute.",
                    headers={"x-should-retry": "false"},
                )
        costs = [
            cost_us(1 if r.dimension == "requests" else tokens_estimate, r.per_minute)
            for r in rules
        ]
        try:
            acquisition = await self._backend.acquire(
                [Charge(r.key, c) for r, c in zip(rules, costs, strict=True)]
            )
        except StoreUnavailable as error:
            self._store_failed(error)
            if self._config.store.failure_mode == "closed":
                raise RateLimitStoreUnavailable(
                    "Rate limits cannot be checked (their store is unreachable); try again later."
                ) from error
            return LimitDecision(tokens_estimate=tokens_estimate, store_available=False)

        after = [
            b + c if acquisition.allowed else b
            for b, c in zip(acquisition.backlogs_us, costs, strict=True)
        ]
        states = {
            dim: _tightest(
                [(r, a) for r, a in zip(rules, after, strict=True) if r.dimension == dim]
            )
            for dim in ("requests", "tokens")
        }
        if not acquisition.allowed:
            raise _refusal(rules, acquisition.backlogs_us, costs, states, tokens_estimate)
        return LimitDecision(
            requests=states["requests"],
            tokens=states["tokens"],
            tokens_estimate=tokens_estimate,
            token_buckets=tuple((r.key, r.per_minute) for r in rules if r.dimension == "tokens"),
        )

    async def record_tokens(self, decision: LimitDecision, actual_tokens: int) -> None:
        """Replace the decision's token estimate by `actual_tokens` (the final usage's
        total, streams included; 0 when the call failed). Never raises for a store outage:
        the answer has gone out already."""
        delta = max(0, actual_tokens) - decision.tokens_estimate
        if delta == 0 or not decision.token_buckets or not decision.store_available:
            return
        shifts = [(key, cost_us(delta, per_minute)) for key, per_minute in decision.token_buckets]
        try:
            await self._backend.adjust(shifts)
        except StoreUnavailable as error:
            self._store_failed(error)

    def _store_failed(self, error: StoreUnavailable) -> None:
        self.store_failures += 1
        now = time.monotonic()
        interval = self._config.store.warn_interval_s
        if self._last_warning is None or now - self._last_warning >= interval:
            self._last_warning = now
            log.warning(
                "rate-limit store unreachable (%s); failure_mode=%s; %d failures so far",
                error,
                self._config.store.failure_mode,
                self.store_failures,
            )

    def _rules(self, principal: Principal, model: str) -> list[_Rule]:
        config = self._config
        rules: list[_Rule] = []

        def add(key: str, rate: Rate | None, describes: str) -> None:
            if rate is None:
                return
            if rate.rpm is not None:
                rules.append(_Rule(f"{key}:requests", rate.rpm, "requests", describes))
            if rate.tpm is not None:
                rules.append(_Rule(f"{key}:tokens", rate.tpm, "tokens", describes))

        user = principal.user_id
        if principal.key_id is not None:
            key_rate = config.keys.get(principal.key_id, config.per_key)
            add(f"key:{principal.key_id}", key_rate, f"API key '{principal.key_id}'")
        add(f"user:{user}", self._user_rate(principal), f"user '{user}'")
        for group in dict.fromkeys(principal.groups):
            if group in config.groups:
                add(f"group:{group}", config.groups[group], f"group '{group}'")
        model_rate = config.models.get(model)
        if model_rate is not None:
            add(f"model:{model}", model_rate, f"model '{model}'")
            add(f"model-user:{model}:{user}", model_rate.per_user, f"user '{user}' on '{model}'")
        return rules

    def _user_rate(self, principal: Principal) -> Rate | None:
        config = self._config
        if principal.user_id in config.users:
            return config.users[principal.user_id]
        per_member = [
            rate
            for group in principal.groups
            if group in config.groups and (rate := config.groups[group].per_member) is not None
        ]
        if not per_member:
            return config.per_user
        # The strictest of the user's groups, requests and tokens separately.
        rpms = [r.rpm for r in per_member if r.rpm is not None]
        tpms = [r.tpm for r in per_member if r.tpm is not None]
        return Rate(rpm=min(rpms, default=None), tpm=min(tpms, default=None))


def _remaining(rule: _Rule, backlog_us: int) -> int:
    return max(0, (WINDOW_US - backlog_us) * rule.per_minute // WINDOW_US)


def _tightest(rules: list[tuple[_Rule, int]]) -> LimitState | None:
    """The limit with the fewest units left (ties: the smaller limit), or None."""
    if not rules:
        return None
    rule, backlog = min(rules, key=lambda ra: (_remaining(*ra), ra[0].per_minute))
    return LimitState(rule.per_minute, _remaining(rule, backlog), max(0, backlog) / 1_000_000)


def _refusal(
    rules: list[_Rule],
    backlogs: tuple[int, ...],
    costs: list[int],
    states: dict[str, LimitState | None],
    tokens_estimate: int,
) -> RateLimited:
    # The request fits once every limit it failed has drained enough: wait for the slowest.
    waits = [
        (b + c - WINDOW_US, rule, b)
        for rule, b, c in zip(rules, backlogs, costs, strict=True)
        if b + c > WINDOW_US
    ]
    wait_us, rule, backlog = max(waits, key=lambda w: w[0])
    asked = 1 if rule.dimension == "requests" else tokens_estimate
    message = (
        f"Rate limit reached for {rule.describes} on {rule.dimension} per minute:"
        f" limit {rule.per_minute}, remaining {_remaining(rule, backlog)},"
        f" requested {asked}. Please try again in {_duration(wait_us)}."
    )
    headers = _headers(states["requests"], states["tokens"])
    headers["retry-after"] = str(max(1, math.ceil(wait_us / 1_000_000)))
    headers["retry-after-ms"] = str(max(1, math.ceil(wait_us / 1000)))
    return RateLimited(message, headers=headers)


def _headers(requests: LimitState | None, tokens: LimitState | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, state in (("requests", requests), ("tokens", tokens)):
        if state is not None:
            headers[f"x-ratelimit-limit-{name}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{name}"] = _duration(round(state.reset_s * 1_000_000))
    return headers


def _duration(us: int) -> str:
    """A duration the way OpenAI's reset headers write it (Go's style): 20ms, 1.5s, 6m0s."""
    if us <= 0:
        return "0s"
    if us < 1_000_000:
        return f"{math.ceil(us / 1000)}ms"
    ms = math.ceil(us / 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    seconds = f"{ms / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{minutes}m{seconds}s"
    return f"{seconds}s"
