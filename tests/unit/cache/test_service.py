"""Cache replicas over one entry log: consistency, persistence, invalidation, on SQLite and
PostgreSQL, with the real MiniLM embedder."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.embedder import Embedder
from gateway.cache.keys import scope_key
from gateway.cache.log import CacheLog, LoggedEntry
from gateway.cache.lookup import CacheQuery, NewEntry, Selector
from gateway.cache.service import SETTLING_AT_MOST, AsyncEmbed, CacheService
from gateway.storage import Database
from gateway.storage.keyring import Keyring
from gateway.storage.sealing import Sealer, SealError
from tests.unit.cache.conftest import ManualClock

Replica = Callable[..., Awaitable[CacheService]]


def scope(model: str = "gpt-x", user: str = "alice") -> str:
    return scope_key(
        model=model,
        messages=[{"role": "user", "content": "?"}],
        params={},
        isolation="user",
        identity=user,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'cache.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest_asyncio.fixture
async def replica(
    database_url: str, embedder: Embedder, clock: ManualClock
) -> AsyncIterator[Replica]:
    """Start cache replicas that share `database_url`, as Serve replicas would."""
    started: list[CacheService] = []

    async def embed(texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(embedder.embed, texts)

    async def start(*, sync_interval_s: float = 3600.0, **settings: object) -> CacheService:
        config = CacheConfig(**settings)  # type: ignore[arg-type]
        service = CacheService(
            SemanticCache(embedder, config, clock=clock),
            embed,
            CacheLog(Database(database_url)),
            sync_interval_s=sync_interval_s,
        )
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.aclose()


def answer(text: str) -> NewEntry:
    return NewEntry(scope=scope(), text=text, model="gpt-x", response=f"answer to {text}")


@pytest.mark.asyncio
async def test_an_entry_inserted_through_one_replica_is_served_by_another_at_once(
    replica: Replica,
) -> None:
    first, second = await replica(), await replica()  # their background syncs never run
    entry_id = await first.insert(answer("How do I reset my VPN password?"))
    assert entry_id not in second.cache
    query = CacheQuery(scope=scope(), text="how do i reset my vpn password")
    found = await second.lookup(query)  # its miss caught up with the log
    assert found.hit is not None
    assert (found.hit.entry_id, found.hit.phase) == (entry_id, "normalized")
    paraphrase = CacheQuery(scope=scope(), text="What are the steps to reset my VPN password?")
    semantic = await second.lookup(paraphrase)
    assert semantic.hit is not None and semantic.hit.phase == "semantic"
    assert semantic.embedding is not None and semantic.embedding.shape == (384,)


@pytest.mark.asyncio
async def test_replicas_converge_within_the_sync_interval_on_their_own(
    replica: Replica,
) -> None:
    first = await replica(sync_interval_s=0.05)
    second = await replica(sync_interval_s=0.05)
    inserted_at = time.monotonic()
    entry_id = await first.insert(answer("Which port does LDAPS use?"))
    while entry_id not in second.cache:  # applied by its background sync, no lookup asked
        assert time.monotonic() - inserted_at < 5.0, "second replica never applied the entry"
        await asyncio.sleep(0.01)
    # The stated bound is one sync interval plus one database read; 5 s is the test's patience.


@pytest.mark.asyncio
async def test_a_restarted_replica_rebuilds_its_cache_from_the_log(replica: Replica) -> None:
    first = await replica()
    await first.insert(answer("What is the capital of Australia?"))
    await first.insert(answer("How many vacation days do new hires get?"))
    await first.aclose()
    restarted = await replica()
    assert len(restarted.cache) == 2
    found = await restarted.lookup(CacheQuery(scope=scope(), text="What's Australia's capital?"))
    assert found.hit is not None and found.hit.phase == "semantic"
    assert found.hit.response == "answer to What is the capital of Australia?"


@pytest.mark.asyncio
async def test_invalidation_reaches_every_replica_and_survives_a_restart(
    replica: Replica,
) -> None:
    first, second = await replica(), await replica()
    kept = await first.insert(answer("What is our travel policy?"))
    dropped = await first.insert(
        NewEntry(scope=scope("other-model"), text="Hi", model="other-model", response="hello")
    )
    await second.sync()
    assert kept in second.cache and dropped in second.cache
    assert await first.invalidate(Selector(model="other-model")) == 1
    assert dropped not in first.cache
    await second.sync()
    assert dropped not in second.cache and kept in second.cache
    assert len((await replica()).cache) == 1


@pytest.mark.asyncio
async def test_invalidation_by_age_and_by_id(replica: Replica, clock: ManualClock) -> None:
    service = await replica()
    old = await service.insert(answer("Where is the Berlin office?"))
    clock.advance(600)
    new = await service.insert(answer("Where is the Paris office?"))
    assert await service.invalidate(Selector(created_before=clock() - 300)) == 1
    assert old not in service.cache and new in service.cache
    assert await service.invalidate(Selector(entry_ids=(new,))) == 1
    assert len(service.cache) == 0


@pytest.mark.asyncio
async def test_expired_entries_are_not_replayed(replica: Replica, clock: ManualClock) -> None:
    service = await replica(ttl_s=60)
    await service.insert(answer("What is the wifi password policy?"))
    clock.advance(61)
    assert len((await replica(ttl_s=60)).cache) == 0


def test_compaction_keeps_the_newest_and_drops_the_expired(tmp_path: Path) -> None:
    entry_log = CacheLog(Database(f"sqlite:///{tmp_path / 'log.db'}"))
    vector = np.ones(384, dtype=np.float32)
    for i in range(5):
        entry_log.append(LoggedEntry(0, "s", "m", f"q{i}", "a", vector, created_at=100.0 + i))
    entry_log.invalidate(Selector(entry_ids=(5,)), now=200.0)
    removed = entry_log.compact(expired_before=101.0, keep=2, deletes_before=300.0)
    # q0 expired, q1 beyond the newest two (q2, q3; q4 was invalidated), the delete row old.
    assert removed == 3
    assert [op.entry.text for op in entry_log.since(0) if op.entry] == ["q2", "q3"]


def test_an_empty_invalidation_is_refused(tmp_path: Path) -> None:
    entry_log = CacheLog(Database(f"sqlite:///{tmp_path / 'log.db'}"))
    with pytest.raises(ValueError, match="select something"):
        entry_log.invalidate(Selector(), now=0.0)


def test_a_sealed_log_keeps_no_prompt_or_answer_in_clear(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    sealer = Sealer(Keyring.parse("d1:" + "k" * 40))
    entry_log = CacheLog(Database(f"sqlite:///{path}"), sealer=sealer)
    vector = np.ones(384, dtype=np.float32)
    entry_log.append(
        LoggedEntry(0, "s", "m", "my badge is 4471", "noted 4471", vector, 1.0, context="hi")
    )
    assert b"4471" not in path.read_bytes()
    (op,) = entry_log.since(0)
    assert op.entry is not None
    assert (op.entry.text, op.entry.response, op.entry.context) == (
        "my badge is 4471",
        "noted 4471",
        "hi",
    )
    with pytest.raises(SealError):  # a replica without the keys cannot read the entries
        CacheLog(Database(f"sqlite:///{path}")).since(0)


async def _started(
    tmp_path: Path, embedder: Embedder, clock: ManualClock, embed: AsyncEmbed
) -> CacheService:
    """One replica on its own SQLite log whose embeddings go through `embed`."""
    service = CacheService(
        SemanticCache(embedder, CacheConfig(), clock=clock),
        embed,
        CacheLog(Database(f"sqlite:///{tmp_path / 'cache.db'}")),
    )
    await service.start()
    return service


@pytest.mark.asyncio
async def test_an_insert_returns_before_its_answer_is_embedded(
    tmp_path: Path, embedder: Embedder, clock: ManualClock
) -> None:
    """The response that waits for an insert does not wait for the answer's vector: the
    entry is servable (and in the log) when `insert` returns; the vector follows, and only
    once there is a stored neighbour to compare the answer with."""
    response = "The moon is about 384,400 km from the earth, on average, centre to centre."
    answers_embedding = asyncio.Event()
    answer_may_finish = asyncio.Event()

    async def embed(texts: list[str]) -> np.ndarray:
        if any("384,400" in text for text in texts):
            answers_embedding.set()
            await answer_may_finish.wait()
        return await asyncio.to_thread(embedder.embed, texts)

    service = await _started(tmp_path, embedder, clock, embed)
    try:
        alone = await service.insert(
            NewEntry(scope(), "How far is the moon from the earth?", "gpt-x", response)
        )
        await service.settled()
        first = service.cache.get(alone)
        assert first is not None and first.answer_vector is None  # nothing to compare with
        assert not answers_embedding.is_set()

        entry = NewEntry(scope(), "What is the distance from the earth to the moon?", "gpt-x",
                         response)  # fmt: skip
        entry_id = await service.insert(entry)
        await asyncio.wait_for(answers_embedding.wait(), timeout=30)
        stored = service.cache.get(entry_id)
        assert stored is not None and stored.answer_vector is None
        hit = await service.lookup(CacheQuery(scope(), entry.text, model="gpt-x"))
        assert hit.hit is not None and hit.hit.entry_id == entry_id

        answer_may_finish.set()
        await asyncio.wait_for(service.settled(), timeout=30)
        assert stored.answer_vector is not None and first.answer_vector is not None
    finally:
        answer_may_finish.set()
        await service.aclose()


@pytest.mark.asyncio
async def test_inserts_wait_for_their_answers_again_when_too_many_are_behind(
    tmp_path: Path, embedder: Embedder, clock: ManualClock
) -> None:
    """The work behind the responses stays bounded: past SETTLING_AT_MOST answers waiting to
    be embedded, an insert waits for its own."""
    held = asyncio.Event()
    reply = "the capital of France is Paris, the largest city of the country, on the Seine."
    waiting: list[str] = []
    one_past_the_bound = asyncio.Event()

    async def embed(texts: list[str]) -> np.ndarray:
        if any(text.startswith("Answer number") for text in texts):
            waiting.append(texts[0])
            if len(waiting) > SETTLING_AT_MOST:
                one_past_the_bound.set()
            await held.wait()
        return await asyncio.to_thread(embedder.embed, texts)

    service = await _started(tmp_path, embedder, clock, embed)
    asked = ["What is", "Which city is", "Name", "Tell me", "Say what is", "Do you know"]
    # Phrasings of one question: each new one has the earlier ones as neighbours.
    ends = ("?", ", please?", " now?")
    questions = [f"{a} the capital of France{end}" for end in ends for a in asked]
    try:

        def entry(i: int) -> NewEntry:  # answers long enough to be compared by vector
            return NewEntry(scope(), questions[i], "gpt-x", f"Answer number {i}: {reply}")

        await service.insert(entry(0))  # no neighbour yet: its answer is not embedded
        await service.settled()
        for i in range(1, SETTLING_AT_MOST + 1):
            await asyncio.wait_for(service.insert(entry(i)), timeout=30)
        last = asyncio.create_task(service.insert(entry(SETTLING_AT_MOST + 1)))
        await asyncio.wait_for(one_past_the_bound.wait(), timeout=30)
        assert not last.done()  # its answer's embedding is held, and it waits for it
        held.set()
        await asyncio.wait_for(last, timeout=30)
        await service.settled()
        assert all(service.cache.get(i) is not None for i in range(1, SETTLING_AT_MOST + 3))
    finally:
        held.set()
        await service.aclose()
