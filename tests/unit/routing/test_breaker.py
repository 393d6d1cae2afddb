"""Circuit breakers: every transition on a fake clock, then what the router does with them."""

from __future__ import annotations

import pytest

from gateway.errors import UpstreamUnavailable
from gateway.routing.breaker import BreakerState, CircuitBreaker, Transition
from gateway.routing.config import BreakerPolicy
from gateway.routing.router import Router
from tests.support.simulator import Sim
from tests.unit.routing.support import FakeClock, MakeRouter, chat

POLICY = BreakerPolicy(
    window=10, min_requests=4, failure_rate=0.5, cooldown=5, max_cooldown=12, half_open_probes=1
)


def _breaker(
    clock: FakeClock, policy: BreakerPolicy = POLICY
) -> tuple[CircuitBreaker, list[Transition]]:
    seen: list[Transition] = []
    return CircuitBreaker("p/m", policy, clock=clock, on_transition=seen.append), seen


def _outcomes(breaker: CircuitBreaker, *failed: bool) -> None:
    for fail in failed:
        permit = breaker.admit()
        assert permit is not None
        if fail:
            breaker.record_failure(permit)
        else:
            breaker.record_success(permit)


def test_closed_opens_when_the_failure_rate_reaches_the_threshold(clock: FakeClock) -> None:
    breaker, seen = _breaker(clock)
    _outcomes(breaker, False, True, False)
    assert breaker.state is BreakerState.CLOSED  # 3 outcomes: under min_requests
    _outcomes(breaker, True)  # 2 of 4 failed = 0.5
    assert breaker.state is BreakerState.OPEN
    assert breaker.admit() is None
    assert [(t.before, t.after, t.reason) for t in seen] == [
        (BreakerState.CLOSED, BreakerState.OPEN, "failure_rate")
    ]
    assert breaker.trips == 1 and breaker.next_probe_at() == clock.now + 5


def test_min_requests_keeps_it_closed_however_bad_the_rate(clock: FakeClock) -> None:
    breaker, _ = _breaker(clock, POLICY.model_copy(update={"min_requests": 5}))
    _outcomes(breaker, True, True, True, True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.failure_rate() == 1.0


def test_outcomes_older_than_the_window_no_longer_count(clock: FakeClock) -> None:
    breaker, _ = _breaker(clock)
    _outcomes(breaker, True, True, True)
    clock.advance(11)
    _outcomes(breaker, False, False, False, True)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.window_requests() == 4 and breaker.failure_rate() == 0.25


def test_open_becomes_half_open_after_the_cooldown(clock: FakeClock) -> None:
    breaker, seen = _breaker(clock)
    breaker.trip("test")
    clock.advance(4.9)
    assert breaker.state is BreakerState.OPEN
    clock.advance(3.1)
    assert breaker.state is BreakerState.HALF_OPEN
    # Noticed on this read, 8 s after the trip; dated when the cooldown ran out.
    assert seen[-1].reason == "cooldown_elapsed" and seen[-1].at == clock.now - 3


def test_half_open_admits_only_its_probes(clock: FakeClock) -> None:
    breaker, _ = _breaker(clock, POLICY.model_copy(update={"half_open_probes": 2}))
    breaker.trip("test")
    clock.advance(5)
    first, second = breaker.admit(), breaker.admit()
    assert first is not None and first.probe and second is not None
    assert breaker.admit() is None
    breaker.release(first)  # a probe that ended without a verdict frees its slot
    assert breaker.admit() is not None


def test_half_open_closes_on_a_successful_probe(clock: FakeClock) -> None:
    breaker, seen = _breaker(clock)
    breaker.trip("test")
    clock.advance(5)
    probe = breaker.admit()
    assert probe is not None
    breaker.record_success(probe)
    assert breaker.state is BreakerState.CLOSED
    assert seen[-1].reason == "probe_succeeded"
    assert breaker.window_requests() == 0  # a closed breaker starts afresh


def test_half_open_reopens_on_a_failed_probe_with_a_growing_cooldown(clock: FakeClock) -> None:
    breaker, seen = _breaker(clock)
    breaker.trip("test")
    waits = []
    for _ in range(3):
        opened = clock.now
        clock.advance(breaker.next_probe_at() - opened)  # type: ignore[operator]
        probe = breaker.admit()
        assert probe is not None and probe.probe
        breaker.record_failure(probe)
        assert breaker.state is BreakerState.OPEN
        waits.append(breaker.next_probe_at() - clock.now)  # type: ignore[operator]
    assert waits == [10, 12, 12]  # doubled, then capped at max_cooldown
    assert seen[-1].reason == "probe_failed" and breaker.trips == 4
    clock.advance(12)
    probe = breaker.admit()
    assert probe is not None
    breaker.record_success(probe)
    breaker.trip("again")
    assert breaker.next_probe_at() == clock.now + 5  # a close resets the cooldown


def test_outcome_of_a_request_admitted_before_a_trip_is_ignored(clock: FakeClock) -> None:
    breaker, _ = _breaker(clock)
    old = breaker.admit()
    assert old is not None
    breaker.trip("test")
    clock.advance(5)
    probe = breaker.admit()
    assert probe is not None
    breaker.record_failure(old)  # stale: must not reopen the half-open breaker
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.record_success(probe)
    assert breaker.state is BreakerState.CLOSED


TRIPPY = """
routing:
  breaker: {min_requests: 2, failure_rate: 0.5, cooldown: 5}
  outlier: {consecutive_failures: 0}
models:
  pair: {targets: [first/model-a, second/model-b]}
  solo: {targets: [first/model-a]}
"""


@pytest.mark.asyncio
async def test_open_target_is_skipped_then_probed_and_closed_after_the_cooldown(
    make_router: MakeRouter, sim: Sim, clock: FakeClock
) -> None:
    router = await make_router(TRIPPY)
    await sim.fault(kind="status", status=503, match_model="model-a", count=2)
    for _ in range(2):
        await router.chat(chat("pair"))
    skipped = await router.chat(chat("pair"))
    assert skipped.route.header() == "second/model-b; tried=first/model-a:circuit_open"
    status = {t.target: t for t in router.status().targets}["first/model-a"]
    assert (status.breaker, status.trips, status.next_probe_in_s) == ("open", 1, 5)
    clock.advance(5)
    probed = await router.chat(chat("pair"))
    assert probed.route.header() == "first/model-a"
    assert [(t.after, t.reason) for t in router.status().transitions] == [
        ("open", "failure_rate"),
        ("half_open", "cooldown_elapsed"),
        ("closed", "probe_succeeded"),
    ]
    assert await sim.models_asked() == ["model-a", "model-b"] * 2 + ["model-b", "model-a"]


async def _trip_both(router: Router, sim: Sim, clock: FakeClock) -> None:
    await sim.fault(kind="status", status=503, count=4)
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await router.chat(chat("pair"))
    assert {t.breaker for t in router.status().targets} == {"open"}
    clock.advance(2)  # model-a was the first to trip: its probe is due first


@pytest.mark.asyncio
async def test_with_every_target_open_one_request_probes_the_one_due_back_first(
    make_router: MakeRouter, sim: Sim, clock: FakeClock
) -> None:
    router = await make_router(TRIPPY)
    await _trip_both(router, sim, clock)
    routed = await router.chat(chat("pair"))
    # Served early, so not reported as skipped; model-b was.
    assert routed.route.header() == "first/model-a; tried=second/model-b:circuit_open"
    states = {t.target: t.breaker for t in router.status().targets}
    assert states == {"first/model-a": "closed", "second/model-b": "open"}
    assert [(t.target, t.after, t.reason) for t in router.status().transitions][-2:] == [
        ("first/model-a", "half_open", "probed_early"),
        ("first/model-a", "closed", "probe_succeeded"),
    ]


@pytest.mark.asyncio
async def test_with_every_target_open_and_probed_others_fail_fast_with_circuit_open(
    make_router: MakeRouter, sim: Sim, clock: FakeClock
) -> None:
    router = await make_router(TRIPPY)
    await _trip_both(router, sim, clock)
    first_probe = await router.chat_stream(chat("pair", stream=True))
    assert first_probe.route.target == "first/model-a"
    second_probe = await router.chat_stream(chat("pair", stream=True))
    assert second_probe.route.target == "second/model-b"
    asked = len(await sim.models_asked())
    with pytest.raises(UpstreamUnavailable) as err:
        await router.chat(chat("pair"))  # both probes are still in flight
    body = err.value.to_body()["error"]
    assert err.value.status == 503 and body["code"] == "circuit_open"
    assert "first/model-a:circuit_open" in body["message"]
    assert err.value.headers["retry-after"] == "1"
    assert len(await sim.models_asked()) == asked  # the fast failure reached no upstream
    for stream in (first_probe, second_probe):
        await stream.aclose()
