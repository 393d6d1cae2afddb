"""A follow-up's context is judged as a question: the learned phase reads a conversation
candidate's context similarity against the alias's single-question rates.

The world is scripted so that the similarities are exact: one stored exchange (a first
question, then "What should I do first?"), and follow-ups with the same last turn after a
first question at a chosen cosine to the stored one. The alias has learned, from single
questions, that at 0.88 most questions differ and at 0.93 they agree; its conversation rates
(few, same-topic exchanges) say 0.88 is safe. The cache code is the real one.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from tests.unit.cache.conftest import ManualClock
from tests.unit.cache.test_learning import DIM, World

SCOPE = "scripted"
FOLLOW_UP = "What should I do first?"
STORED_CONTEXT = "how do i install the image feature"


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _at(base: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at exactly `cosine` to the unit vector `base`."""
    noise = rng.standard_normal(DIM)
    noise -= float(np.dot(noise, base)) * base
    return _unit(cosine * base + np.sqrt(1.0 - cosine**2) * _unit(noise))


def _world() -> World:
    rng = np.random.default_rng(5)
    world = World()
    stored = _unit(rng.standard_normal(DIM))
    world.vectors[STORED_CONTEXT] = stored
    world.vectors[FOLLOW_UP] = _unit(rng.standard_normal(DIM))
    # Other first questions, at a known cosine to the stored one.
    for text, cosine in (
        ("what do i need for image support", 0.88),  # another question
        ("how can i install the image feature", 0.93),  # the same question reworded
        ("how do i install the image feature please", 0.96),
    ):
        world.vectors[text] = _at(stored, cosine, rng)
    for text in ("a single question", "another exchange", "its follow-up"):
        world.vectors[text] = _unit(rng.standard_normal(DIM))
    return world


def _cache(world: World, clock: ManualClock) -> tuple[SemanticCache, int]:
    config = CacheConfig(isolation="global", max_error_rate=0.01)
    cache = SemanticCache(world, config, clock=clock, rng=random.Random(1))
    entry_id = cache.insert(
        FOLLOW_UP,
        SCOPE,
        "install the vision extra first",
        model="m",
        context=STORED_CONTEXT,
    )
    # A loose budget: many conversation lookups, nothing served yet.
    cache.count_traffic([("m", "conversation", 1000, [], 0.0)], clock())
    return cache, entry_id


def _teach(cache: SemanticCache, clock: ManualClock) -> None:
    """Single questions: mostly different at 0.88, the same at 0.93. Conversations (another
    scope, so never a candidate here): right at 0.88."""
    single = cache.insert("a single question", "elsewhere", "an answer", model="m")
    other = cache.insert(
        "its follow-up", "elsewhere", "another answer", model="m", context="another exchange"
    )
    for i in range(40):
        cache.learn(single, f"near{i}", 0.88, i % 10 == 0, clock())
        cache.learn(single, f"same{i}", 0.93, True, clock())
        cache.learn(other, f"conv{i}", 0.88, True, clock())


def _follow_up(cache: SemanticCache, world: World, first: str) -> int | None:
    found = cache.lookup_semantic(
        FOLLOW_UP,
        SCOPE,
        world.vectors[FOLLOW_UP],
        context=first,
        context_vector=world.vectors[first],
    )
    return found.hit.entry_id if found.hit is not None else None


def test_a_follow_up_after_a_different_first_question_is_refused(clock: ManualClock) -> None:
    world = _world()
    cache, _ = _cache(world, clock)
    _teach(cache, clock)
    # The conversation rates alone would serve it (risk well within the loose cutoff) ...
    assert cache.learner.alias_risk(
        "m", "conversation", 0.88, None, static_threshold=0.95, bound=0.01
    ) == pytest.approx(0.0, abs=0.1)
    # ... but as a question, a first question at 0.88 is most likely another question.
    assert cache.learner.question_risk("m", 0.88, static_threshold=0.95, bound=0.01) > 0.5
    assert _follow_up(cache, world, "what do i need for image support") is None


def test_a_follow_up_after_an_equivalent_first_question_hits_below_the_static_threshold(
    clock: ManualClock,
) -> None:
    world = _world()
    cache, entry_id = _cache(world, clock)
    _teach(cache, clock)
    assert _follow_up(cache, world, "how can i install the image feature") == entry_id
    assert cache.stats.learned_hits == 1


def test_a_cold_cache_serves_follow_ups_as_the_static_threshold_does(clock: ManualClock) -> None:
    world = _world()
    cache, entry_id = _cache(world, clock)
    assert _follow_up(cache, world, "how do i install the image feature please") == entry_id
    assert _follow_up(cache, world, "how can i install the image feature") is None
    assert _follow_up(cache, world, "what do i need for image support") is None
