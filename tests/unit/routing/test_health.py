"""Health: active checks take a provider out and bring it back through half-open; passive
ejection does the same after consecutive live failures."""

from __future__ import annotations

import asyncio

import pytest

from gateway.config import ConfigError, ProviderConfig
from gateway.errors import UpstreamUnavailable
from gateway.providers.base import Provider
from gateway.providers.registry import build_provider
from gateway.routing.config import HealthCheck
from gateway.routing.health import HttpHealthProbe
from gateway.routing.router import Router
from gateway.routing.status import TargetStatus
from tests.support import free_port
from tests.support.simulator import Sim
from tests.unit.routing.support import FakeClock, MakeRouter, chat


class ScriptedProbe:
    """A health probe whose verdicts the test sets; counts its calls."""

    def __init__(self) -> None:
        self.passing = True
        self.calls = 0
        self.closed = False

    async def __call__(self, provider: Provider, check: HealthCheck) -> bool:
        self.calls += 1
        return self.passing

    async def aclose(self) -> None:
        self.closed = True


CHECKED = """
routing:
  health_checks:
    first: {interval: 7, unhealthy_after: 2, healthy_after: 1}
models:
  pair: {targets: [first/model-a, second/model-b]}
"""


def _target(router: Router, label: str) -> TargetStatus:
    return next(t for t in router.status().targets if t.target == label)


@pytest.mark.asyncio
async def test_failed_checks_take_a_provider_out_and_a_pass_brings_it_back_half_open(
    make_router: MakeRouter, sim: Sim
) -> None:
    probe = ScriptedProbe()
    router = await make_router(CHECKED, health_probe=probe)
    await router.check_health()
    assert _target(router, "first/model-a").health == "healthy"

    probe.passing = False
    await router.check_health()
    assert _target(router, "first/model-a").health == "healthy"  # one failure is not enough
    await router.check_health()
    out = _target(router, "first/model-a")
    assert (out.health, out.breaker, out.open_reason) == (
        "unhealthy",
        "open",
        "health_check_failed",
    )
    routed = await router.chat(chat("pair"))
    assert routed.route.header() == "second/model-b; tried=first/model-a:unhealthy"

    probe.passing = True
    await router.check_health()
    back = _target(router, "first/model-a")
    assert (back.health, back.breaker) == ("healthy", "half_open")
    probed = await router.chat(chat("pair"))  # the first live request is the probe
    assert probed.route.header() == "first/model-a"
    assert _target(router, "first/model-a").breaker == "closed"
    assert _target(router, "second/model-b").health == "unchecked"


@pytest.mark.asyncio
async def test_started_router_checks_on_its_interval_until_closed(make_router: MakeRouter) -> None:
    probe = ScriptedProbe()
    waits: list[float] = []
    two_rounds = asyncio.Event()

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) >= 2:
            two_rounds.set()
        await asyncio.sleep(0)

    router = await make_router(CHECKED, health_probe=probe, sleep=sleep)
    await router.start()
    await asyncio.wait_for(two_rounds.wait(), timeout=5)
    await router.aclose()
    assert probe.calls >= 2 and waits[:2] == [7, 7]
    assert probe.closed
    calls = probe.calls
    await asyncio.sleep(0)
    assert probe.calls == calls  # the loop is gone


@pytest.mark.asyncio
async def test_http_probe_passes_on_2xx_and_fails_otherwise(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router("models: {}\n")
    provider = router._providers["first"]
    probe = HttpHealthProbe(transport=sim.transport)
    try:
        assert await probe(provider, HealthCheck(path="/models"))
        assert await probe(provider, HealthCheck(path="http://sim/healthz"))
        assert not await probe(provider, HealthCheck(path="/models/no-such-model"))
    finally:
        await probe.aclose()
        await provider.aclose()


@pytest.mark.asyncio
async def test_http_probe_fails_when_nothing_listens() -> None:
    provider = build_provider(
        "gone",
        ProviderConfig(preset="simulator", base_url=f"http://127.0.0.1:{free_port()}/v1"),
    )
    probe = HttpHealthProbe()
    try:
        assert not await probe(provider, HealthCheck(timeout=1))
    finally:
        await probe.aclose()
        await provider.aclose()


@pytest.mark.asyncio
async def test_health_check_of_an_unknown_provider_is_a_config_error(
    make_router: MakeRouter,
) -> None:
    with pytest.raises(ConfigError, match=r"routing.health_checks.ghost: unknown provider"):
        await make_router("routing:\n  health_checks:\n    ghost: {}\n")


EJECTING = """
routing:
  breaker: {min_requests: 100}
  outlier: {consecutive_failures: 3, ejection: 10}
models:
  pair: {targets: [first/model-a, second/model-b]}
"""


@pytest.mark.asyncio
async def test_consecutive_failures_eject_a_target_until_a_probe_succeeds(
    make_router: MakeRouter, sim: Sim, clock: FakeClock
) -> None:
    router = await make_router(EJECTING)
    await sim.fault(kind="status", status=500, match_model="model-a", count=3)
    for _ in range(3):
        await router.chat(chat("pair"))
    ejected = _target(router, "first/model-a")
    assert (ejected.health, ejected.breaker, ejected.next_probe_in_s) == ("ejected", "open", 10)
    skipped = await router.chat(chat("pair"))
    assert skipped.route.header() == "second/model-b; tried=first/model-a:circuit_open"
    clock.advance(10)
    back = await router.chat(chat("pair"))
    assert back.route.header() == "first/model-a"
    assert _target(router, "first/model-a").breaker == "closed"


@pytest.mark.asyncio
async def test_a_success_resets_the_failure_streak(make_router: MakeRouter, sim: Sim) -> None:
    router = await make_router(EJECTING)
    await sim.fault(kind="status", status=500, match_model="model-a", count=2)
    await router.chat(chat("pair"))
    await router.chat(chat("pair"))
    await router.chat(chat("pair"))  # model-a answers: the streak is over
    await sim.fault(kind="status", status=500, match_model="model-a", count=2)
    await router.chat(chat("pair"))
    await router.chat(chat("pair"))
    assert _target(router, "first/model-a").breaker == "closed"


@pytest.mark.asyncio
async def test_every_provider_unhealthy_fails_fast_without_an_early_probe(
    make_router: MakeRouter, sim: Sim
) -> None:
    probe = ScriptedProbe()
    probe.passing = False
    router = await make_router(
        CHECKED.replace("    first: {", "    second: {interval: 7}\n    first: {"),
        health_probe=probe,
    )
    for _ in range(2):
        await router.check_health()
    with pytest.raises(UpstreamUnavailable) as err:
        await router.chat(chat("pair"))
    assert err.value.code == "circuit_open"
    assert "first/model-a:unhealthy" in err.value.message
    assert await sim.models_asked() == []
