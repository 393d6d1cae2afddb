"""The learned state travels through the entry log: replicas at the same log position, and a
restarted one, decide the same; on SQLite and PostgreSQL. Also the log's migration of a
table written by an earlier release."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.log import CacheLog, LoggedEntry
from gateway.cache.lookup import CacheQuery, NewEntry, Selector
from gateway.cache.service import CacheService
from gateway.storage import Database
from tests.servers.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from tests.unit.cache.conftest import ManualClock
from tests.unit.cache.test_learning import SCOPE, World, _trace, scripted_world

Replica = Callable[[], Awaitable[CacheService]]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cache.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def world() -> World:
    return scripted_world(families=30, twins=10, phrasings=20)


@pytest_asyncio.fixture
async def replica(database_url: str, world: World, clock: ManualClock) -> AsyncIterator[Replica]:
    started: list[CacheService] = []

    async def start() -> CacheService:
        config = CacheConfig(max_error_rate=0.01, exploration_rate=0.1)
        cache = SemanticCache(world, config, clock=clock, rng=random.Random(len(started)))
        service = CacheService(
            cache, world.embed_async, CacheLog(Database(database_url)), sync_interval_s=3600
        )
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.aclose()


async def _learn(service: CacheService, world: World, clock: ManualClock, n: int) -> None:
    """Traffic through one replica: lookups, explorations observed, answers stored."""
    for f, text in _trace(world, n, seed=9):
        clock.advance(1.0)
        result = await service.lookup(
            CacheQuery(SCOPE, text, model="m", embedding=world.vectors[text], explore=True)
        )
        if result.hit is None:
            answer = world.families[f][2]
            if result.explore is not None:
                await service.observe(result.explore, answer)
            await service.insert(NewEntry(SCOPE, text, "m", answer, world.vectors[text]))
    await service.settled()  # the answers' vectors and neighbourhoods, logged
    await service.flush_traffic()


def _risks(service: CacheService, world: World) -> list[tuple[int, float, float]]:
    """Each candidate's risk and the alias's serving cutoff, for every question of the world."""
    out = []
    cache = service.cache
    for _, texts, _ in world.families:
        for text in texts:
            for entry, similarity, _ in cache._candidates(world.vectors[text], SCOPE, "", None):
                risk = cache.learner.risk(
                    entry.entry_id, similarity, static_threshold=0.95, bound=0.01
                )
                out.append((entry.entry_id, round(similarity, 5), round(risk, 9)))
                break
    cutoff = cache.learner.cutoff("m", "single", 0.01, cache.config.max_hit_risk)
    return [*out, (-1, 0.0, round(cutoff, 9))]


@pytest.mark.asyncio
async def test_a_second_replica_learns_what_the_first_observed(
    replica: Replica, world: World, clock: ManualClock
) -> None:
    first, second = await replica(), await replica()
    await _learn(first, world, clock, 600)
    assert (await first.stats())["observations"]["equivalent"] > 0
    learned = _risks(first, world)
    assert learned != _risks(second, world)  # nothing applied yet
    await second.sync()
    assert _risks(second, world) == learned


@pytest.mark.asyncio
async def test_a_restarted_replica_decides_as_before(
    replica: Replica, world: World, clock: ManualClock
) -> None:
    first = await replica()
    await _learn(first, world, clock, 600)
    learned = _risks(first, world)
    await first.aclose()
    restarted = await replica()
    assert _risks(restarted, world) == learned
    # Same decisions too, for lookups that are not shadowed (shadows are a per-replica draw).
    for _, texts, _ in world.families[:10]:
        text = texts[-1]
        query = CacheQuery(SCOPE, text, model="m", embedding=world.vectors[text], explore=True)
        a, b = await first.lookup(query), await restarted.lookup(query)
        if (a.explore and a.explore.shadow) or (b.explore and b.explore.shadow):
            continue
        assert (a.hit and a.hit.entry_id, bool(a.explore)) == (
            b.hit and b.hit.entry_id,
            bool(b.explore),
        )


@pytest.mark.asyncio
async def test_old_observations_leave_with_the_learning_window(
    replica: Replica, world: World, clock: ManualClock, database_url: str
) -> None:
    first = await replica()
    await _learn(first, world, clock, 300)
    entry_log = CacheLog(Database(database_url))
    observed = entry_log.counts().get("observe", 0)
    assert observed > 0
    clock.advance(first.cache.config.learning_window_s + 1)
    removed = entry_log.compact(
        expired_before=0.0,
        keep=10**6,
        deletes_before=0.0,
        observations_before=clock() - first.cache.config.learning_window_s,
    )
    assert removed >= observed
    assert entry_log.counts().get("observe", 0) == 0


def test_a_log_from_an_earlier_release_gains_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE cache_log (seq INTEGER PRIMARY KEY AUTOINCREMENT, op TEXT NOT NULL,"
            " entry_id INTEGER, scope TEXT, model TEXT, text TEXT, response TEXT, vector BLOB,"
            " created_at REAL NOT NULL)"
        )
        db.execute(
            "INSERT INTO cache_log (op, scope, model, text, response, vector, created_at)"
            " VALUES ('insert', 's', 'm', 'q', 'a', ?, 1.0)",
            (bytes(384 * 4),),
        )
    entry_log = CacheLog(Database(f"sqlite:///{path}"))
    (op,) = entry_log.since(0)
    assert op.entry is not None and (op.entry.text, op.entry.context) == ("q", "")
    assert op.entry.context_vector is None


def test_an_answers_vector_leaves_the_log_with_its_entry(tmp_path: Path) -> None:
    entry_log = CacheLog(Database(f"sqlite:///{tmp_path / 'log.db'}"))
    vector = np.ones(384, dtype=np.float32)
    for i in range(3):
        entry_id = entry_log.append(LoggedEntry(0, "s", "m", f"q{i}", "a", vector, 100.0 + i))
        entry_log.answer_vector(entry_id, vector, 100.0 + i)
    assert entry_log.counts() == {"insert": 3, "answer": 3}
    entry_log.invalidate(Selector(entry_ids=(1,)), now=200.0)
    assert entry_log.counts() == {"insert": 2, "answer": 2, "delete": 1}
    # q1 expires; its answer's vector goes with it.
    entry_log.compact(expired_before=101.5, keep=10, deletes_before=0.0)
    assert entry_log.counts() == {"insert": 1, "answer": 1, "delete": 1}
    answered = [op.answered for op in entry_log.since(0) if op.op == "answer"]
    assert [entry_id for entry_id, _ in answered] == [5]  # q2's insert row is seq 5
