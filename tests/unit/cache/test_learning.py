"""The learned semantic phase on a scripted world: the bound, explorations and the budget.

The world is scripted so that the similarities are known: question families with vectors
around a centre (paraphrases at cosine ~0.88, below the static threshold), some families with
a "twin" whose questions sit as close to theirs as their own paraphrases do (near misses
nothing but answers can tell apart), and answers that are the same text within a family and
unrelated vectors across families. The cache code is the real one, end to end: lookups,
explorations, `observe`, inserts.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

import numpy as np
import pytest

from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.equivalence import answer_text
from gateway.cache.lookup import CacheQuery, NewEntry
from gateway.cache.service import CacheService
from tests.unit.cache.conftest import ManualClock

DIM = 384
SCOPE = "scripted"
_SYLLABLES = "ka lo mi nu pe ra si to vu we xa yo zi bo ce du fa ge hi jo".split()


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(3))


def _unit(
    rng: np.random.Generator, around: np.ndarray | None = None, spread: float = 0.0
) -> np.ndarray:
    noise = rng.standard_normal(DIM)
    noise /= np.linalg.norm(noise)
    vector = noise if around is None else around + spread * noise
    return (vector / np.linalg.norm(vector)).astype(np.float32)


@dataclass
class World:
    """Texts with scripted vectors; `embed` is what the cache embeds with."""

    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    families: list[tuple[str, list[str], str]] = field(default_factory=list)  # name, texts, answer
    dim: int = DIM

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])

    async def embed_async(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)


def scripted_world(
    seed: int = 3, families: int = 60, twins: int = 20, phrasings: int = 40
) -> World:
    """Families whose paraphrases sit at cosine ~0.88 to each other; `twins` of them have a
    twin family as close. Answers: one long text per family, unrelated vectors across."""
    rng, nprng = random.Random(seed), np.random.default_rng(seed)
    world = World()
    centres: list[np.ndarray] = []
    for f in range(families):
        centre = _unit(nprng) if f < families - twins else _unit(nprng, centres[f - twins], 0.2)
        centres.append(centre)
        name = _word(rng)
        texts = [f"ask {name} {_word(rng)} {_word(rng)}" for _ in range(phrasings)]
        for text in texts:
            world.vectors[text] = _unit(nprng, centre, 0.36)
        answer = f"the answer about {name} is " + " ".join(_word(rng) for _ in range(20))
        world.vectors[answer] = _unit(nprng)
        world.families.append((name, texts, answer))
    return world


def _trace(world: World, n: int, seed: int = 5) -> list[tuple[int, str]]:
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 0.8 for rank in range(len(world.families))]
    out = []
    for _ in range(n):
        f = rng.choices(range(len(world.families)), weights)[0]
        out.append((f, rng.choice(world.families[f][1])))
    return out


@dataclass
class Tally:
    lookups: int = 0
    right: int = 0  # semantic hits of the request's family (keyed hits are not counted)
    wrong: int = 0
    shadows: int = 0
    worst_after_500: float = 0.0


async def _run(
    world: World, config: CacheConfig, trace: list[tuple[int, str]], clock: ManualClock
) -> Tally:
    service = CacheService(
        SemanticCache(world, config, clock=clock, rng=random.Random(7)), world.embed_async
    )
    family_of: dict[int, int] = {}
    tally = Tally()
    for f, text in trace:
        clock.advance(1.0)
        tally.lookups += 1
        result = await service.lookup(
            CacheQuery(SCOPE, text, model="m", embedding=world.vectors[text], explore=True)
        )
        if result.hit is not None and result.hit.phase != "semantic":
            pass
        elif result.hit is not None:
            if family_of[result.hit.entry_id] == f:
                tally.right += 1
            else:
                tally.wrong += 1
        else:
            answer = world.families[f][2]
            if result.explore is not None:
                tally.shadows += result.explore.shadow
                await service.observe(result.explore, answer)
            entry = NewEntry(SCOPE, text, "m", answer, world.vectors[text])
            family_of[await service.insert(entry)] = f
        if tally.lookups >= 500:
            tally.worst_after_500 = max(tally.worst_after_500, tally.wrong / tally.lookups)
    return tally


@pytest.mark.asyncio
async def test_false_hits_stay_under_the_bound_while_learning_serves_paraphrases() -> None:
    world = scripted_world()
    trace = _trace(world, 4000)
    learned = await _run(world, CacheConfig(max_error_rate=0.01), trace, ManualClock())
    static = await _run(world, CacheConfig(max_error_rate=None), trace, ManualClock())
    # The paraphrases sit below the static threshold: the static cache serves (almost) none.
    assert static.right + static.wrong < 0.02 * static.lookups
    # The learned phase serves many, and wrong ones stay under 1 % of lookups throughout.
    assert learned.right > 0.2 * learned.lookups
    assert learned.wrong <= 0.01 * learned.lookups
    assert learned.worst_after_500 <= 0.01


@pytest.mark.asyncio
async def test_a_tighter_bound_serves_fewer_wrong_answers() -> None:
    world = scripted_world()
    trace = _trace(world, 3000)
    tight = await _run(world, CacheConfig(max_error_rate=0.002), trace, ManualClock())
    loose = await _run(
        world, CacheConfig(max_error_rate=0.05, max_hit_risk=0.5), trace, ManualClock()
    )
    assert tight.wrong <= 0.002 * tight.lookups + 1
    assert loose.right + loose.wrong > tight.right + tight.wrong


def _twins(world: World) -> tuple[list[str], str]:
    """Two texts with the same vector (a would-be hit at cosine 1.0 that the keyed phases miss)
    and their answer."""
    nprng = np.random.default_rng(11)
    vector = _unit(nprng)
    texts = [f"question x{chr(97 + i % 26)}{chr(97 + i // 26)} said otherwise" for i in range(400)]
    for text in texts:
        world.vectors[text] = vector
    answer = "a long stored answer that says the same thing every time it is asked again"
    world.vectors[answer] = _unit(nprng)
    return texts, answer


async def _shadows(
    config: CacheConfig, lookups: int, clock: ManualClock
) -> tuple[list[bool], CacheService, list[str], World]:
    """Would-be hits of one entry; each shadow is observed (the fresh answer agrees)."""
    world = World()
    texts, answer = _twins(world)
    service = CacheService(
        SemanticCache(world, config, clock=clock, rng=random.Random(1)), world.embed_async
    )
    await service.insert(NewEntry(SCOPE, texts[0], "m", answer, world.vectors[texts[0]]))
    shadowed = []
    for text in texts[1 : lookups + 1]:
        result = await service.lookup(
            CacheQuery(SCOPE, text, model="m", embedding=world.vectors[text], explore=True)
        )
        assert result.hit is not None or (result.explore is not None and result.explore.shadow)
        shadowed.append(result.hit is None)
        if result.explore is not None:
            await service.observe(result.explore, answer)
    return shadowed, service, texts, world


@pytest.mark.asyncio
async def test_shadows_start_often_where_nothing_is_known_and_fall_to_the_rate() -> None:
    config = CacheConfig(exploration_rate=0.1, exploration_budget_per_hour=10_000)
    shadowed, _, _, _ = await _shadows(config, 400, ManualClock())
    early, late = sum(shadowed[:40]) / 40, sum(shadowed[-200:]) / 200
    assert early > 1.5 * late  # more (up to half) while the similarity has no data
    assert 0.05 < late < 0.2  # then about the configured rate
    none, _, _, _ = await _shadows(CacheConfig(exploration_rate=0.0), 300, ManualClock())
    assert not any(none)


@pytest.mark.asyncio
async def test_shadow_explorations_stop_at_the_budget_and_resume_an_hour_later(
    clock: ManualClock,
) -> None:
    config = CacheConfig(exploration_rate=1.0, exploration_budget_per_hour=5)
    shadowed, service, texts, world = await _shadows(config, 50, clock)
    assert sum(shadowed) == 5
    assert (await service.stats())["explorations"] == {"shadow": 5, "observed": 0}
    clock.advance(3601)
    result = await service.lookup(
        CacheQuery(SCOPE, texts[-1], model="m", embedding=world.vectors[texts[-1]], explore=True)
    )
    assert result.explore is not None and result.explore.shadow


@pytest.mark.asyncio
async def test_observe_compares_answers_and_counts_the_spend(clock: ManualClock) -> None:
    config = CacheConfig(exploration_rate=1.0)
    world = World()
    texts, answer = _twins(world)
    service = CacheService(SemanticCache(world, config, clock=clock), world.embed_async)
    await service.insert(NewEntry(SCOPE, texts[0], "m", answer, world.vectors[texts[0]]))
    first = await service.lookup(
        CacheQuery(SCOPE, texts[1], model="m", embedding=world.vectors[texts[1]], explore=True)
    )
    second = await service.lookup(
        CacheQuery(SCOPE, texts[2], model="m", embedding=world.vectors[texts[2]], explore=True)
    )
    assert first.explore is not None and second.explore is not None
    same = await service.observe(first.explore, answer, tokens=40)
    other_answer = "something else entirely, about another matter, with other words in it"
    world.vectors[other_answer] = -world.vectors[answer]
    different = await service.observe(second.explore, other_answer, tokens=60)
    assert (same.equivalent, same.method, same.shadow, same.tokens) == (True, "embedding", True, 40)
    assert (different.equivalent, different.method) == (False, "embedding")
    stats = await service.stats()
    assert stats["exploration_tokens"] == {"shadow": 100, "observed": 0}
    assert stats["observations"]["equivalent"] == 1 and stats["observations"]["different"] == 1


@pytest.mark.asyncio
async def test_a_judges_verdict_decides(clock: ManualClock) -> None:
    asked: list[tuple[str, str, str]] = []

    async def judge(question: str, cached: str, fresh: str) -> bool | None:
        asked.append((question, cached, fresh))
        return False

    world = World()
    texts, answer = _twins(world)
    service = CacheService(
        SemanticCache(world, CacheConfig(exploration_rate=1.0), clock=clock),
        world.embed_async,
    )
    await service.insert(NewEntry(SCOPE, texts[0], "m", answer, world.vectors[texts[0]]))
    result = await service.lookup(
        CacheQuery(SCOPE, texts[1], model="m", embedding=world.vectors[texts[1]], explore=True)
    )
    assert result.explore is not None
    explored = result.explore  # the question and the candidate's answer, as a judge sees them
    verdict = await judge(explored.text, answer_text(explored.answer), answer)
    observation = await service.observe(explored, answer, verdict=verdict)
    assert (observation.equivalent, observation.method) == (False, "judge")
    assert asked == [(texts[1], answer, answer)]


@pytest.mark.asyncio
async def test_observing_an_entry_that_is_gone_learns_nothing(clock: ManualClock) -> None:
    world = World()
    texts, answer = _twins(world)
    service = CacheService(
        SemanticCache(world, CacheConfig(exploration_rate=1.0), clock=clock), world.embed_async
    )
    entry_id = await service.insert(NewEntry(SCOPE, texts[0], "m", answer, world.vectors[texts[0]]))
    result = await service.lookup(
        CacheQuery(SCOPE, texts[1], model="m", embedding=world.vectors[texts[1]], explore=True)
    )
    assert result.explore is not None
    service.cache.remove([entry_id])
    observation = await service.observe(result.explore, answer)
    assert observation.equivalent is None and observation.reason == "entry gone"


def test_a_cold_cache_serves_exactly_what_the_static_one_serves() -> None:
    """Cold start is never worse than the static threshold: same hits, same misses."""
    world = scripted_world(families=30, twins=10, phrasings=10)
    trace = _trace(world, 300)
    for threshold in (0.95, 0.85):
        outcomes = []
        for bound in (None, 0.01):
            cache = SemanticCache(
                world, CacheConfig(max_error_rate=bound, exploration_rate=0.0), rng=random.Random(0)
            )
            # Entries only: nothing observed, so the learned phase has only its prior.
            for f, text in trace[:150]:
                cache.insert(
                    text, SCOPE, world.families[f][2], embedding=world.vectors[text], model="m"
                )
            # Many exact hits first: a loose error budget must not buy ignorance.
            for _, text in trace[:150] * 20:
                cache.lookup_keyed(text, SCOPE, model="m")
            outcomes.append(
                [
                    getattr(
                        cache.lookup(
                            text, SCOPE, embedding=world.vectors[text], threshold=threshold
                        ),
                        "entry_id",
                        None,
                    )
                    for _, text in trace[150:]
                ]
            )
        assert outcomes[0] == outcomes[1]


def test_run_is_deterministic_for_a_seed() -> None:
    world = scripted_world(families=20, twins=5, phrasings=10)
    trace = _trace(world, 400)
    first = asyncio.run(_run(world, CacheConfig(), trace, ManualClock()))
    second = asyncio.run(_run(world, CacheConfig(), trace, ManualClock()))
    assert first == second
