"""Route strategies: which target each one picks first, and that the rest stay as fallbacks."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from gateway.routing.breaker import CircuitBreaker
from gateway.routing.config import BreakerPolicy, Target, TokenPrice
from gateway.routing.strategies import Candidate, Weighted
from gateway.routing.targets import TargetState
from tests.support.simulator import Sim
from tests.unit.routing.support import FakeClock, MakeRouter, chat


def _candidate(model: str, weight: float = 1.0) -> Candidate:
    label = f"p/{model}"
    breaker = CircuitBreaker(label, BreakerPolicy(), clock=FakeClock())
    return Candidate(
        Target(provider="p", model=model, weight=weight), TargetState(label, "p", breaker, 0.3)
    )


def test_weighted_first_picks_follow_the_weights_with_a_seeded_rng() -> None:
    candidates = [_candidate("a", 1), _candidate("b", 3), _candidate("never", 0)]
    strategy = Weighted(random.Random(42))
    orders = [strategy.order(candidates) for _ in range(4000)]
    firsts = Counter(order[0].target.model for order in orders)
    assert abs(firsts["b"] / 4000 - 0.75) < 0.03
    assert firsts["never"] == 0
    # The whole list comes back every time: the rest is the fallback chain.
    assert all(len(order) == 3 and order[-1].target.model == "never" for order in orders)


def test_weighted_order_is_reproducible_from_the_seed() -> None:
    candidates = [_candidate(m) for m in "abcd"]
    first = [c.target.model for c in Weighted(random.Random(7)).order(candidates)]
    again = [c.target.model for c in Weighted(random.Random(7)).order(candidates)]
    assert first == again


@pytest.mark.asyncio
async def test_weighted_alias_spreads_requests_over_its_targets(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router(
        """
models:
  spread:
    strategy: weighted
    targets:
      - {provider: first, model: light, weight: 1}
      - {provider: second, model: heavy, weight: 4}
""",
        rng=random.Random(3),
    )
    for _ in range(40):
        await router.chat(chat("spread"))
    asked = Counter(await sim.models_asked())
    assert asked["heavy"] > asked["light"] > 0
    assert asked.total() == 40  # no failures, so no fallback calls


@pytest.mark.asyncio
async def test_least_latency_moves_to_the_faster_target_once_both_are_measured(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router(
        "models:\n  quick: {strategy: least_latency, targets: [first/model-a, second/model-b]}\n",
        clock=time.monotonic,  # the simulator's injected delay makes model-a slow
    )
    await sim.fault(kind="delay", delay_ms=60, match_model="model-a")
    first = await router.chat(chat("quick"))  # neither measured: configured order
    second = await router.chat(chat("quick"))  # model-b not measured yet: measure it
    third = await router.chat(chat("quick"))  # both measured: the faster one
    assert [r.route.target for r in (first, second, third)] == [
        "first/model-a",
        "second/model-b",
        "second/model-b",
    ]
    latency = {t.target: t.latency_ewma_ms for t in router.status().targets}
    assert latency["first/model-a"] > latency["second/model-b"]  # type: ignore[operator]


@pytest.mark.asyncio
async def test_least_busy_avoids_the_target_with_a_stream_in_flight(
    make_router: MakeRouter,
) -> None:
    router = await make_router(
        "models:\n  busy: {strategy: least_busy, targets: [first/model-a, second/model-b]}\n"
    )
    held = await router.chat_stream(chat("busy", stream=True))  # committed, still open
    assert held.route.target == "first/model-a"
    while_busy = await router.chat(chat("busy"))
    await held.aclose()
    after = await router.chat(chat("busy"))
    assert while_busy.route.target == "second/model-b"
    assert after.route.target == "first/model-a"
    assert {t.target: t.in_flight for t in router.status().targets} == {
        "first/model-a": 0,
        "second/model-b": 0,
    }


@pytest.mark.asyncio
async def test_cost_picks_the_cheapest_priced_target_and_puts_unpriced_last(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router(
        """
models:
  thrifty:
    strategy: cost
    targets:
      - first/unpriced
      - {provider: second, model: dear, price_per_mtok: {input: 5, output: 15}}
      - {provider: third, model: cheap, price_per_mtok: 0.5}
"""
    )
    await sim.fault(kind="status", status=503, match_model="cheap")
    routed = await router.chat(chat("thrifty"))
    assert routed.route.header() == "second/dear; tried=third/cheap:503"


@pytest.mark.asyncio
async def test_cost_asks_the_injected_price_lookup(make_router: MakeRouter) -> None:
    table = {
        "first/x": TokenPrice(input=0.1, output=0.1),
        "second/y": TokenPrice(input=1, output=1),
    }
    router = await make_router(
        """
models:
  priced:
    strategy: cost
    targets: [{provider: second, model: y, price_per_mtok: 0.01}, first/x]
""",
        prices=lambda target: table.get(target.label),
    )
    routed = await router.chat(chat("priced"))
    assert routed.route.target == "first/x"  # the table wins over the config's own price


@pytest.mark.asyncio
async def test_priority_is_the_default_and_keeps_the_configured_order(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router("models:\n  chain: {targets: [third/c, first/a, second/b]}\n")
    await sim.fault(kind="status", status=500, match_model="c")
    await sim.fault(kind="status", status=502, match_model="a")
    routed = await router.chat(chat("chain"))
    assert routed.route.header() == "second/b; tried=third/c:502,first/a:502"
    assert router.status().aliases["chain"].strategy == "priority"


@pytest.mark.asyncio
async def test_cost_falls_back_to_the_accounting_price_table(
    make_router: MakeRouter, sim: Sim
) -> None:
    # sim-large and sim-small are priced in gateway/accounting/prices.yaml; the config's
    # `pricing.prices` overrides the packaged price, and a target's own price beats both.
    router = await make_router(
        """
pricing:
  prices: {second/sim-small: {input: 50, output: 50}}
models:
  table: {strategy: cost, targets: [first/sim-large, second/sim-small, third/sim-small]}
  own:
    strategy: cost
    targets: [first/sim-large, {provider: second, model: sim-large, price_per_mtok: 0.01}]
"""
    )
    assert (await router.chat(chat("table"))).route.target == "third/sim-small"
    assert (await router.chat(chat("own"))).route.target == "second/sim-large"
