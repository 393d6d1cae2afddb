"""The learned phase's margin classes and its checks of repeated questions.

A candidate's margin (its lead over the nearest candidate with another answer) picks the
rates it is read against; a cold class reads like the alias's pooled rates. A question served
semantically and asked again is checked (a shadow) in proportion to its risk, and that check
informs its neighbourhood but not the alias's rates. The `Learner` is driven directly, with a
scripted random source where a draw decides, and through `CacheService` for the log.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from gateway.cache.budget import HourlyBudget
from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.learning import Learner
from gateway.cache.log import CacheLog, LoggedObservation
from gateway.cache.lookup import Exploration, NewEntry
from gateway.cache.rates import CLEAR, margin_class
from gateway.cache.service import CacheService
from gateway.storage import Database
from tests.unit.cache.conftest import ManualClock
from tests.unit.cache.test_learning import SCOPE, World, _unit

BOUND = 0.01
STATIC = 0.95


class Draws(random.Random):
    """A random source whose `random()` returns scripted values, in order."""

    def __init__(self, values: list[float]) -> None:
        super().__init__(0)
        self.values = list(values)

    def random(self) -> float:
        return self.values.pop(0)


def _learner(clock: ManualClock, rng: random.Random | None = None) -> Learner:
    learner = Learner(7 * 86400.0, clock, rng)
    for entry_id in (1, 2, 3):
        learner.add_entry(entry_id, "m", "single")
    return learner


def test_margin_classes() -> None:
    assert margin_class(None) == CLEAR
    assert margin_class(0.0) == 0
    assert margin_class(0.049) == 0
    assert margin_class(0.05) == 1
    assert margin_class(0.149) == 1
    assert margin_class(0.15) == CLEAR
    assert margin_class(-0.1) == 0  # a rival above the candidate (the better one was vetoed)


def test_the_margin_is_the_lead_over_the_nearest_candidate_with_another_answer(
    clock: ManualClock,
) -> None:
    learner = _learner(clock)
    assert learner.margin(1, 0.9, [(1, 0.9)]) is None  # no rival
    assert learner.margin(1, 0.9, [(1, 0.9), (2, 0.85), (3, 0.8)]) == pytest.approx(0.05)
    learner.join(1, 2)  # entry 2's answer agrees with entry 1's: no rival any more
    assert learner.margin(1, 0.9, [(1, 0.9), (2, 0.85), (3, 0.8)]) == pytest.approx(0.1)
    assert learner.margin(1, 0.9, [(1, 0.9), (99, 0.89)]) is None  # unknown entries: none
    assert learner.margin(99, 0.9, [(1, 0.9)]) is None


def test_contested_candidates_are_read_against_their_own_rates(clock: ManualClock) -> None:
    learner = _learner(clock)

    def risk(margin: float | None) -> float:
        return learner.alias_risk("m", "single", 0.9, margin, static_threshold=STATIC, bound=BOUND)

    cold = risk(None)
    assert cold == risk(0.01) == risk(0.1)  # cold: every class reads the static prior
    for i in range(40):  # wrong at 0.9 when contested, right when clear
        learner.record(1, f"c{i}", 0.9, False, clock(), margin=0.01)
        learner.record(1, f"k{i}", 0.9, True, clock(), margin=None)
    contested, clear, between = risk(0.01), risk(None), risk(0.1)
    assert contested > 0.8
    assert clear < 0.1
    # The middle class has no data of its own: it reads like the pooled rates.
    assert clear < between < contested
    assert between == pytest.approx(0.5, abs=0.1)
    assert learner.alias_observations() == {"m/single": 80}


def test_a_question_served_and_asked_again_is_checked_by_its_risk(clock: ManualClock) -> None:
    # Draws: first lookup's shadow draw (no), the repeat check (yes), then the shadow draw
    # of the lookup after the check (no).
    learner = _learner(clock, Draws([0.99, 0.0, 0.99]))
    budget = HourlyBudget(100, clock)
    learner.count_traffic("m", "single", clock(), 1000, [], 0.0)  # a cutoff above the bound

    def decide(pair: str) -> tuple[str, bool, bool]:
        d = learner.decide(
            1,
            0.97,
            static_threshold=STATIC,
            bound=BOUND,
            max_hit_risk=0.5,
            exploration_rate=0.05,
            budget=budget,
            pair=pair,
        )
        return d.action, d.shadow, d.repeat

    assert decide("q") == ("serve", False, False)
    assert decide("q") == ("explore", True, True)  # asked again: checked
    assert decide("q") == ("serve", False, False)  # not checked twice for one serving
    # A question whose verdict stands (right: risk 0) is never checked again.
    learner.record(1, "r", 0.97, True, clock(), weight=0.0)
    learner._rng = Draws([0.99, 0.99])
    assert decide("r") == ("serve", False, False)
    assert decide("r") == ("serve", False, False)


def test_the_repeat_check_is_drawn_in_proportion_to_the_risk(clock: ManualClock) -> None:
    learner = _learner(clock, random.Random(3))
    budget = HourlyBudget(10_000, clock)
    learner.count_traffic("m", "single", clock(), 10_000, [], 0.0)
    checked = 0
    for i in range(400):
        for _ in range(2):
            d = learner.decide(
                1,
                0.97,
                static_threshold=STATIC,
                bound=BOUND,
                max_hit_risk=0.5,
                exploration_rate=1e-9,
                budget=budget,
                pair=f"q{i}",
            )
            checked += d.repeat
    cutoff = learner.cutoff("m", "single", BOUND, 0.5)
    expected = 400 * BOUND / 4 / cutoff  # the cold risk above the static threshold
    assert 0 < checked < 400
    assert abs(checked - expected) < 4 * np.sqrt(expected) + 2


@pytest.mark.asyncio
async def test_a_repeat_check_informs_the_neighbourhood_not_the_alias_rates(
    clock: ManualClock, tmp_path: Path
) -> None:
    world = World()
    nprng = np.random.default_rng(5)
    vector = _unit(nprng)
    world.vectors["what is the plan for the launch"] = vector
    stored = "the stored answer says the launch plan has three stages and one review"
    fresh = "an unrelated reply about holidays in spring with several long words"
    world.vectors[stored], world.vectors[fresh] = _unit(nprng), _unit(nprng)
    entry_log = CacheLog(Database(f"sqlite:///{tmp_path / 'log.db'}"))
    service = CacheService(
        SemanticCache(world, CacheConfig(), clock=clock), world.embed_async, entry_log
    )
    entry_id = await service.insert(
        NewEntry(SCOPE, "what is the plan for the launch", "m", stored, vector)
    )
    text = "what's the plan for the launch"
    exploration = Exploration(
        entry_id, 0.97, SCOPE, text, "", "m", True, 0.01, 1.0, margin=0.2, repeat=True
    )
    observation = await service.observe(exploration, fresh)
    assert observation.equivalent is False
    learner = service.cache.learner
    pair = next(iter(learner._clusters[entry_id].observations))
    assert learner.risk(entry_id, 0.97, static_threshold=STATIC, bound=BOUND, pair=pair) == 1.0
    assert learner.alias_observations() == {"m/single": 0}
    rows = [op.observed for op in entry_log.since(0) if op.op == "observe"]
    assert rows and isinstance(rows[-1], LoggedObservation)
    assert (rows[-1].weight, rows[-1].margin) == (0.0, 0.2)  # the log carries both
