"""Several OS processes appending to one database keep one intact chain (SQLite file and
PostgreSQL): each batch takes the chain's head inside an exclusive transaction."""

from __future__ import annotations

import itertools
import multiprocessing

from gateway.audit import AuditStore, verify
from tests.unit.audit.workers import write_through_a_writer

PROCESSES = 4
EACH = 250


def test_concurrent_processes_keep_one_intact_chain(db_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES + 1)
    workers = [
        context.Process(target=write_through_a_writer, args=(db_url, w, EACH, start))
        for w in range(PROCESSES)
    ]
    for process in workers:
        process.start()
    start.wait(120)  # released together once all are ready, to contend for the head
    for process in workers:
        process.join(timeout=300)
    assert [p.exitcode for p in workers] == [0] * PROCESSES

    store = AuditStore.open(db_url)
    report = verify(store)
    assert report.ok, report.problem
    assert report.checked == PROCESSES * EACH == store.count()
    request_ids = {row[0] for row in store.db.fetchall("SELECT request_id FROM audit_records")}
    assert request_ids == {f"w{w}-{n}" for w in range(PROCESSES) for n in range(EACH)}
    # The workers really interleaved: some worker's records are not one contiguous run.
    order = [
        row[0].split("-")[0]
        for row in store.db.fetchall("SELECT request_id FROM audit_records ORDER BY seq")
    ]
    runs = 1 + sum(a != b for a, b in itertools.pairwise(order))
    assert runs > PROCESSES
    store.db.close()
