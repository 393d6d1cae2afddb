"""Health: active checks of providers on an interval, and passive ejection from live traffic.

Both take a target out of rotation through its circuit breaker, so both bring it back the same
way: half-open, with a few live requests as probes, closed on the first success.

* Active: `HealthMonitor` GETs a provider's check path every `interval`. After
  `unhealthy_after` failed checks in a row the provider is unhealthy: its targets' breakers
  open and the router skips them while it stays so. After `healthy_after` passes in a row it
  is healthy again and its targets' breakers go half-open at once.
* Passive: `OutlierDetector` ejects a target after `consecutive_failures` failed live
  requests in a row, for `ejection` seconds, even when too little traffic reached it for the
  breaker's failure rate to count.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

import httpx

from gateway.providers.base import Provider
from gateway.routing.breaker import BreakerState
from gateway.routing.config import HealthCheck, OutlierPolicy
from gateway.routing.targets import TargetState
from gateway.tasks import cancelled

log = logging.getLogger(__name__)


class HealthProbe(Protocol):
    """One check of one provider: True when it passed."""

    async def __call__(self, provider: Provider, check: HealthCheck) -> bool: ...

    async def aclose(self) -> None: ...


class HttpHealthProbe:
    """GET the check path with the provider's own credentials (its key, or its signed or
    token authentication: SigV4, Google OAuth, Entra ID); any 2xx passes.

    Keeps one small pooled client per provider, apart from the provider's request pool so
    that a check never waits behind (or holds up) a slow completion.
    """

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._clients: dict[str, httpx.AsyncClient] = {}

    async def __call__(self, provider: Provider, check: HealthCheck) -> bool:
        client = self._clients.get(provider.name)
        if client is None:
            config = provider.config
            client = httpx.AsyncClient(
                base_url=(provider.preset.base_url or "").rstrip("/"),
                headers={**provider.auth_headers(config.resolved_api_key()), **config.headers},
                auth=provider.auth,
                limits=httpx.Limits(max_connections=2),
                transport=self._transport,
            )
            self._clients[provider.name] = client
        try:
            response = await client.get(check.path, timeout=check.timeout)
        except httpx.HTTPError as exc:
            log.info("health check of %r failed: %s", provider.name, type(exc).__name__)
            return False
        return response.is_success

    async def aclose(self) -> None:
        """Close every check client."""
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


class HealthMonitor:
    """Runs each configured provider's check on its interval, and says who is healthy.

    A provider never checked, or not yet failed `unhealthy_after` times, counts as healthy.
    `on_change(provider, healthy)` is called on each flip.
    """

    def __init__(
        self,
        checks: dict[str, tuple[Provider, HealthCheck]],
        probe: HealthProbe,
        on_change: Callable[[str, bool], None],
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._checks = checks
        self._probe = probe
        self._on_change = on_change
        self._sleep = sleep
        self._healthy: dict[str, bool] = dict.fromkeys(checks, True)
        self._streak: dict[str, int] = dict.fromkeys(checks, 0)  # >0 passes, <0 failures
        self._tasks: list[asyncio.Task[None]] = []

    def checked(self, provider: str) -> bool:
        """Whether this provider has an active check."""
        return provider in self._checks

    def healthy(self, provider: str) -> bool:
        """Whether the provider may take traffic as far as its checks know."""
        return self._healthy.get(provider, True)

    async def check_once(self, provider: str | None = None) -> None:
        """Run one round of checks now (one provider's, or every provider's at once)."""
        names = [provider] if provider is not None else list(self._checks)
        await asyncio.gather(*(self._check(name) for name in names))

    def start(self) -> None:
        """Start one checking task per provider on the running loop (idempotent)."""
        if self._tasks:
            return
        for name in self._checks:
            self._tasks.append(asyncio.create_task(self._run(name), name=f"health:{name}"))

    async def aclose(self) -> None:
        """Stop the checking tasks and close the probe's clients."""
        tasks, self._tasks = self._tasks, []
        await cancelled(*tasks)
        await self._probe.aclose()

    async def _run(self, name: str) -> None:
        interval = self._checks[name][1].interval
        while True:
            await self._check(name)
            await self._sleep(interval)

    async def _check(self, name: str) -> None:
        provider, check = self._checks[name]
        try:
            passed = await self._probe(provider, check)
        except Exception:
            # A probe is not allowed to kill its loop; a crash counts as a failed check.
            log.exception("health check of %r crashed", name)
            passed = False
        streak = self._streak[name]
        streak = max(streak, 0) + 1 if passed else min(streak, 0) - 1
        self._streak[name] = streak
        was = self._healthy[name]
        if was and streak <= -check.unhealthy_after:
            self._flip(name, False)
        elif not was and streak >= check.healthy_after:
            self._flip(name, True)

    def _flip(self, name: str, healthy: bool) -> None:
        self._healthy[name] = healthy
        log.warning("provider %r is %s", name, "healthy again" if healthy else "unhealthy")
        self._on_change(name, healthy)


class OutlierDetector:
    """Ejects a target whose live requests failed `consecutive_failures` times in a row."""

    def __init__(self, policy: OutlierPolicy) -> None:
        self._policy = policy

    def after_failure(self, target: TargetState) -> None:
        """Called after each counted failure; trips the target's breaker at the threshold.

        Only a closed breaker is tripped here: a half-open one already reopens on the failed
        probe, with its own growing cooldown.
        """
        limit = self._policy.consecutive_failures
        if not limit or target.consecutive_failures < limit:
            return
        if target.breaker.state is BreakerState.CLOSED:
            target.consecutive_failures = 0
            target.breaker.trip("ejected", cooldown=self._policy.ejection)
