"""The ingress replica's near cache over real cache replicas and their entry log (SQLite,
sealed and clear, and PostgreSQL): what it keeps, what removes it, and the hits it reports
back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from gateway.api.near_cache import REPLICA, NearCache
from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.embedder import Embedder
from gateway.cache.keys import scope_key
from gateway.cache.log import CacheLog
from gateway.cache.lookup import CacheQuery, NewEntry, Selector
from gateway.cache.service import CacheService
from gateway.storage import Database
from gateway.storage.keyring import Keyring
from gateway.storage.sealing import Sealer
from tests.unit.cache.conftest import ManualClock

MODEL = "gpt-x"
SCOPE = scope_key(
    model=MODEL,
    messages=[{"role": "user", "content": "?"}],
    params={},
    isolation="user",
    identity="alice",
)
QUESTION = "How do I rotate an AWS access key?"

pytestmark = pytest.mark.asyncio


def query(text: str = QUESTION) -> CacheQuery:
    return CacheQuery(SCOPE, text, model=MODEL)


@dataclass
class Setup:
    replicas: list[CacheService]
    near: NearCache
    entry_log: CacheLog
    clock: ManualClock
    monotonic: ManualClock


@pytest_asyncio.fixture(params=["clear", "sealed", "postgresql"])
async def setup(
    request: pytest.FixtureRequest, tmp_path: Path, embedder: Embedder, clock: ManualClock
) -> AsyncIterator[Setup]:
    """Two cache replicas that sync only when told to, and a near cache in front of the
    first, all over one log (SQLite, its texts sealed or not, or PostgreSQL)."""
    url = f"sqlite:///{tmp_path / 'cache.db'}"
    if request.param == "postgresql":
        url = str(request.getfixturevalue("postgres_url"))
    sealer = Sealer(Keyring.parse("d1:" + "k" * 40)) if request.param == "sealed" else None
    config = CacheConfig(near_entries=2)

    async def embed(texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(embedder.embed, texts)

    replicas = []
    for _ in range(2):
        service = CacheService(
            SemanticCache(embedder, config, clock=clock),
            embed,
            CacheLog(Database(url), sealer=sealer),
            sync_interval_s=3600.0,
        )
        await service.start()
        replicas.append(service)
    entry_log = CacheLog(Database(url), sealer=sealer)
    monotonic = ManualClock(0.0)
    near = NearCache(config, entry_log, replicas[0].count_nearby, clock=clock, monotonic=monotonic)
    await near.start()
    yield Setup(replicas, near, entry_log, clock, monotonic)
    await near.aclose()
    for service in replicas:
        await service.aclose()


async def kept(setup: Setup, text: str = QUESTION, answer: str = "rotate it") -> int:
    """Store `text`'s answer through the first replica, look it up there and keep the hit
    near, as the request path does; return the entry id."""
    entry_id = await setup.replicas[0].insert(NewEntry(SCOPE, text, MODEL, answer))
    result = await setup.replicas[0].lookup(query(text))
    assert result.hit is not None and result.hit.phase == "exact"
    setup.near.keep(query(text), result)
    return entry_id


async def test_an_exact_hit_a_replica_served_is_answered_near_under_the_same_key(
    setup: Setup,
) -> None:
    assert setup.near.lookup(query()) is None  # nothing kept yet
    entry_id = await kept(setup)
    # The exact phase's light normalisation (whitespace, Unicode) applies here too.
    for text in (QUESTION, "  How do I rotate an AWS\taccess   key? "):
        result = setup.near.lookup(query(text))
        assert result is not None and result.hit is not None, text
        assert (result.hit.entry_id, result.hit.response) == (entry_id, "rotate it")
        assert result.replica == REPLICA
    assert setup.near.lookup(query("How do I rotate an AWS secret key?")) is None
    other_user = CacheQuery(scope_key(
        model=MODEL, messages=[{"role": "user", "content": "?"}], params={},
        isolation="user", identity="bob",
    ), QUESTION, model=MODEL)  # fmt: skip
    assert setup.near.lookup(other_user) is None


async def test_hits_answered_near_are_counted_by_a_cache_replica(setup: Setup) -> None:
    await kept(setup)
    replica = setup.replicas[0]
    exact_before = replica.cache.stats.hits["exact"]
    replica.cache.traffic.drain()  # the replica's own lookups so far
    for _ in range(3):
        assert setup.near.lookup(query()) is not None
    await setup.near.report()
    assert replica.cache.stats.hits["exact"] == exact_before + 3
    assert [(m, k, n) for m, k, n, _, _ in replica.cache.traffic.drain()] == [(MODEL, "single", 3)]
    await setup.near.report()  # nothing new: nothing counted twice
    assert replica.cache.stats.hits["exact"] == exact_before + 3


async def test_an_invalidation_from_anywhere_removes_the_kept_hit_at_the_next_read(
    setup: Setup,
) -> None:
    await kept(setup)
    CacheLog(setup.entry_log.db).invalidate(Selector(model=MODEL), setup.clock())  # the CLI
    assert setup.near.lookup(query()) is not None  # not read yet: within one interval
    assert await setup.near.sync() == 1
    assert setup.near.lookup(query()) is None


async def test_a_newer_answer_under_the_same_key_replaces_the_kept_one(setup: Setup) -> None:
    await kept(setup)
    await setup.near.sync()  # its own insert row: nothing changes
    assert setup.near.lookup(query()) is not None
    # A no-cache request answered fresh through the other replica stores a newer answer.
    await setup.replicas[1].insert(NewEntry(SCOPE, f" {QUESTION}", MODEL, "newer"))
    await setup.near.sync()
    assert setup.near.lookup(query()) is None


async def test_a_lagging_replicas_hit_is_kept_only_if_nothing_read_since_overtakes_it(
    setup: Setup,
) -> None:
    writer, lagging = setup.replicas
    old = await writer.insert(NewEntry(SCOPE, QUESTION, MODEL, "old"))
    await writer.insert(NewEntry(SCOPE, "Who approves VPN access?", MODEL, "the CISO"))
    await lagging.sync()
    await writer.invalidate(Selector(entry_ids=(old,)))
    await writer.insert(NewEntry(SCOPE, "Where are backups kept?", MODEL, "in Frankfurt"))
    await setup.near.sync()  # the near cache has read the delete; the lagging replica not
    stale = await lagging.lookup(query())
    assert stale.hit is not None and stale.hit.response == "old"
    setup.near.keep(query(), stale)
    assert setup.near.lookup(query()) is None
    # What the unread changes do not touch is current: kept.
    vpn = query("Who approves VPN access?")
    setup.near.keep(vpn, await lagging.lookup(vpn))
    assert setup.near.lookup(vpn) is not None
    # A near cache that started after the replica last read the log cannot tell: not kept.
    later = NearCache(
        CacheConfig(), setup.entry_log, writer.count_nearby, clock=setup.clock,
        monotonic=setup.monotonic,
    )  # fmt: skip
    await later.start()
    try:
        later.keep(vpn, await lagging.lookup(vpn))
        assert later.lookup(vpn) is None
    finally:
        await later.aclose()


async def test_entries_expire_with_the_cache_ttl(setup: Setup) -> None:
    await kept(setup)
    setup.clock.advance(CacheConfig().ttl_s + 1)
    assert setup.near.lookup(query()) is None


async def test_nothing_is_answered_near_while_the_log_is_not_read(setup: Setup) -> None:
    await kept(setup)
    setup.monotonic.advance(5.0)  # five intervals (at least a second) without a read
    assert setup.near.lookup(query()) is None
    await setup.near.sync()
    assert setup.near.lookup(query()) is not None


async def test_the_least_recently_used_go_first_beyond_near_entries(setup: Setup) -> None:
    questions = [f"Which port does service {n} listen on?" for n in ("A", "B", "C")]
    await kept(setup, questions[0])
    await kept(setup, questions[1])
    assert setup.near.lookup(query(questions[0])) is not None  # A is now the most recent
    await kept(setup, questions[2])
    assert len(setup.near) == 2
    assert setup.near.lookup(query(questions[1])) is None
    assert setup.near.lookup(query(questions[0])) is not None


async def test_exact_only_routes_are_kept_byte_for_byte_and_not_counted_as_lookups(
    setup: Setup,
) -> None:
    """Legacy completions and embeddings: keyed on the raw prompt, whitespace included."""
    prompt = "def add(a, b):"
    raw = CacheQuery(SCOPE, prompt, model=MODEL, exact_only=True)
    replica = setup.replicas[0]
    await replica.insert(NewEntry(SCOPE, prompt, MODEL, "return a + b", exact_only=True))
    await setup.near.sync()  # the insert row of an entry with no vector: keyed raw
    # The replica has not read its own insert row back yet; nothing read since overtakes it.
    setup.near.keep(raw, await replica.lookup(raw))
    hit = setup.near.lookup(raw)
    assert hit is not None and hit.hit is not None and hit.hit.response == "return a + b"
    assert setup.near.lookup(CacheQuery(SCOPE, f"{prompt} ", model=MODEL, exact_only=True)) is None
    assert setup.near.lookup(query(prompt)) is None  # the chat key of the same text
    replica.cache.traffic.drain()
    exact_before = replica.cache.stats.hits["exact"]
    await setup.near.report()
    assert replica.cache.stats.hits["exact"] == exact_before + 1
    assert replica.cache.traffic.drain() == []  # no lookup for the learned phase


async def test_an_answer_longer_than_64_kb_is_not_kept(setup: Setup) -> None:
    await kept(setup, answer="x" * 70_000)
    assert setup.near.lookup(query()) is None
