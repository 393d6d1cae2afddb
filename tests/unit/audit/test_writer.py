"""AuditWriter: off the request path, batched, back-pressured, and nothing lost."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from gateway.audit import (
    AuditConfig,
    AuditRecord,
    AuditStore,
    AuditWriter,
    AuditWriterClosed,
    ContentPolicy,
    verify,
)
from gateway.audit.query import AuditFilter, list_records
from gateway.storage import Database
from tests.unit.audit.factory import make_record

WAIT_S = 30  # an upper bound for a thread to reach a gate; never a synchronisation


class GatedStore(AuditStore):
    """A store whose appends wait at a gate the test opens, and say when they start/finish."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.committed = threading.Event()
        self.batches: list[int] = []

    def append(
        self, records: Sequence[AuditRecord], *, skip_existing: bool = False
    ) -> list[AuditRecord]:
        self.entered.set()
        assert self.gate.wait(WAIT_S), "the test never opened the gate"
        sealed = super().append(records, skip_existing=skip_existing)
        self.batches.append(len(records))
        self.committed.set()
        return sealed


class FlakyStore(AuditStore):
    """A store that fails its first appends; `commit_then_fail` loses the acknowledgement."""

    def __init__(self, db: Database, failures: int, *, commit_then_fail: bool = False) -> None:
        super().__init__(db)
        self.failures = failures
        self.commit_then_fail = commit_then_fail
        self.attempts = 0

    def append(
        self, records: Sequence[AuditRecord], *, skip_existing: bool = False
    ) -> list[AuditRecord]:
        self.attempts += 1
        if self.attempts <= self.failures:
            if self.commit_then_fail:
                super().append(records, skip_existing=skip_existing)
            raise ConnectionError("the database went away")
        return super().append(records, skip_existing=skip_existing)


def _sqlite(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'audit.db'}")


async def _until(event: threading.Event) -> None:
    assert await asyncio.to_thread(event.wait, WAIT_S)


async def _let_tasks_run() -> None:
    # Yields to the event loop (no time passes) so that started tasks reach their first await.
    for _ in range(5):
        await asyncio.sleep(0)


@pytest.mark.asyncio
async def test_record_waits_while_the_queue_is_full_and_resumes_when_space_frees(
    tmp_path: Path,
) -> None:
    store = GatedStore(_sqlite(tmp_path))
    writer = AuditWriter(store, max_queue=2, batch_size=1, flush_interval_s=0)
    await writer.record(make_record(0))
    await _until(store.entered)  # the first batch is stuck in the database
    await writer.record(make_record(1))  # the queue's second place
    third = asyncio.create_task(writer.record(make_record(2)))
    await _let_tasks_run()
    assert not third.done(), "record() returned although the queue was full"
    assert writer.pending == 2
    store.gate.set()
    await third
    assert store.batches, "space can only free up after a commit"
    await writer.aclose()
    assert store.count() == 3
    assert verify(store).ok


@pytest.mark.asyncio
async def test_record_waits_while_another_process_holds_the_write_lock(tmp_path: Path) -> None:
    store = AuditStore(_sqlite(tmp_path))
    locked, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        other = _sqlite(tmp_path)  # its own connection, as another replica would have
        with other.transaction(exclusive=True):
            locked.set()
            release.wait(WAIT_S)
        other.close()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    await _until(locked)
    writer = AuditWriter(store, max_queue=1, batch_size=10, flush_interval_s=0)
    await writer.record(make_record(0))
    second = asyncio.create_task(writer.record(make_record(1)))
    await _let_tasks_run()
    assert not second.done(), "record() returned although nothing could be committed"
    release.set()
    await second
    await writer.aclose()
    await asyncio.to_thread(holder.join)
    assert store.count() == 2


@pytest.mark.asyncio
async def test_a_caller_cancelled_while_waiting_still_has_its_record_written(
    tmp_path: Path,
) -> None:
    store = GatedStore(_sqlite(tmp_path))
    writer = AuditWriter(store, max_queue=1, batch_size=1, flush_interval_s=0)
    await writer.record(make_record(0))
    waiting = asyncio.create_task(writer.record(make_record(1)))
    await _let_tasks_run()
    waiting.cancel()  # the client went away
    store.gate.set()
    await writer.aclose()
    assert store.count() == 2


@pytest.mark.asyncio
async def test_aclose_commits_everything_queued(tmp_path: Path) -> None:
    store = AuditStore(_sqlite(tmp_path))
    # A long interval: only aclose() can be what commits these.
    writer = AuditWriter(store, max_queue=100, batch_size=1000, flush_interval_s=3600)
    records = [make_record(n) for n in range(50)]
    for record in records:
        await writer.record(record)
    assert store.count() == 0
    await writer.aclose()
    assert store.count() == 50
    assert verify(store).ok
    with pytest.raises(AuditWriterClosed):
        await writer.record(make_record(99))


@pytest.mark.asyncio
async def test_requests_finishing_during_shutdown_are_still_recorded(tmp_path: Path) -> None:
    store = GatedStore(_sqlite(tmp_path))
    writer = AuditWriter(store, flush_interval_s=0)
    await writer.record(make_record(0))
    await _until(store.entered)
    closing = asyncio.create_task(writer.aclose())
    await _let_tasks_run()
    await writer.record(make_record(1))  # a request that was still in flight
    also_closing = asyncio.create_task(writer.aclose())  # a second caller waits as well
    store.gate.set()
    await asyncio.gather(closing, also_closing)
    assert store.count() == 2
    with pytest.raises(AuditWriterClosed):
        await writer.record(make_record(2))


@pytest.mark.asyncio
async def test_a_writer_closed_before_any_record_refuses_records(tmp_path: Path) -> None:
    writer = AuditWriter(AuditStore(_sqlite(tmp_path)))
    await writer.aclose()
    with pytest.raises(AuditWriterClosed):
        await writer.record(make_record(0))


@pytest.mark.asyncio
async def test_flush_returns_once_earlier_records_are_committed(tmp_path: Path) -> None:
    store = AuditStore(_sqlite(tmp_path))
    writer = AuditWriter(store, batch_size=1000, flush_interval_s=3600)
    for n in range(10):
        await writer.record(make_record(n))
    await writer.flush()
    assert store.count() == 10
    await writer.flush()  # nothing pending: returns at once
    await writer.aclose()


@pytest.mark.asyncio
async def test_records_are_committed_in_the_background(tmp_path: Path) -> None:
    store = GatedStore(_sqlite(tmp_path))
    store.gate.set()
    writer = AuditWriter(store, flush_interval_s=0.01)
    await writer.record(make_record(0))
    await _until(store.committed)  # no flush(), no aclose(): the interval did it
    assert store.count() == 1
    await writer.aclose()


@pytest.mark.asyncio
async def test_a_full_batch_is_committed_without_waiting_for_the_interval(
    tmp_path: Path,
) -> None:
    store = GatedStore(_sqlite(tmp_path))
    store.gate.set()
    writer = AuditWriter(store, batch_size=5, flush_interval_s=3600)
    for n in range(5):
        await writer.record(make_record(n))
    await _until(store.committed)
    assert store.batches == [5]
    await writer.aclose()


@pytest.mark.asyncio
async def test_a_failing_database_is_retried_until_the_batch_goes_in(tmp_path: Path) -> None:
    store = FlakyStore(_sqlite(tmp_path), failures=3)
    writer = AuditWriter(store, flush_interval_s=0, retry_delay_s=0.001)
    for n in range(20):
        await writer.record(make_record(n))
    await writer.aclose()
    assert store.attempts >= 4
    assert store.count() == 20


@pytest.mark.asyncio
async def test_a_retry_after_a_lost_acknowledgement_does_not_duplicate(tmp_path: Path) -> None:
    store = FlakyStore(_sqlite(tmp_path), failures=1, commit_then_fail=True)
    writer = AuditWriter(store, batch_size=100, flush_interval_s=3600, retry_delay_s=0.001)
    for n in range(10):
        await writer.record(make_record(n))
    await writer.aclose()
    assert store.count() == 10
    assert verify(store).ok


@pytest.mark.asyncio
async def test_content_is_treated_before_it_is_stored(tmp_path: Path) -> None:
    store = AuditStore(_sqlite(tmp_path))
    config = AuditConfig(prompt="redacted", response="none")
    writer = AuditWriter.from_config(store, config, redactor=lambda t: t.replace("4111", "****"))
    await writer.record(AuditRecord(prompt="card 4111", response="ok"))
    await writer.aclose()
    (stored,) = list_records(store, AuditFilter()).records
    assert (stored.prompt_mode, stored.prompt) == ("redacted", "card ****")
    assert (stored.response_mode, stored.response) == ("none", None)


@pytest.mark.asyncio
async def test_a_failing_redactor_keeps_the_record_with_hashes(tmp_path: Path) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("redactor bug")

    store = AuditStore(_sqlite(tmp_path))
    writer = AuditWriter(store, content=ContentPolicy(prompt="redacted", redactor=broken))
    await writer.record(AuditRecord(prompt="secret"))
    await writer.aclose()
    assert store.count() == 1
    (stored,) = list_records(store, AuditFilter()).records
    assert stored.prompt_mode == "hash" and stored.prompt == hashlib.sha256(b"secret").hexdigest()


@pytest.mark.asyncio
async def test_many_concurrent_producers_lose_nothing(db_url: str) -> None:
    store = AuditStore.open(db_url)
    writer = AuditWriter(store, max_queue=500, batch_size=200, flush_interval_s=0.05)
    producers, each = 100, 40

    async def produce(p: int) -> list[str]:
        ids = []
        for n in range(each):
            record = make_record(p * each + n)
            await writer.record(record)
            ids.append(record.id)
        return ids

    sent = [i for ids in await asyncio.gather(*(produce(p) for p in range(producers))) for i in ids]
    await writer.aclose()
    report = await asyncio.to_thread(verify, store)
    assert report.ok, report.problem
    assert report.checked == producers * each == store.count()
    stored = {row[0] for row in store.db.fetchall("SELECT id FROM audit_records")}
    assert stored == set(sent)
    store.db.close()


def test_settings_are_checked() -> None:
    store = AuditStore(Database("sqlite://:memory:"))
    with pytest.raises(ValueError):
        AuditWriter(store, max_queue=0)
