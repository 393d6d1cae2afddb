"""Appending to the chain and reading it back, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools

from gateway.audit import AuditStore, verify
from gateway.audit.chain import GENESIS, link_hash
from gateway.audit.schema import from_row
from tests.unit.audit.factory import make_records


def test_append_links_records_in_order_from_genesis(store: AuditStore) -> None:
    first = store.append(make_records(3))
    second = store.append(make_records(2, start=3))
    sealed = first + second
    assert [r.seq for r in sealed] == [1, 2, 3, 4, 5]
    assert sealed[0].prev_hash == GENESIS
    for before, after in itertools.pairwise(sealed):
        assert after.prev_hash == before.hash
        assert after.hash == link_hash(before.hash or "", after)
    state = store.chain_state()
    assert (state.head.seq, state.head.hash) == (5, sealed[-1].hash)
    assert (state.anchor.seq, state.anchor.hash) == (0, GENESIS)


def test_stored_rows_read_back_as_the_sealed_records(store: AuditStore) -> None:
    sealed = store.append(make_records(4))
    rows = store.rows(after_seq=0, through_seq=10, limit=10)
    assert [from_row(row) for row in rows] == sealed


def test_a_retried_batch_is_not_appended_twice(store: AuditStore) -> None:
    batch = make_records(3)
    store.append(batch[:2])
    again = store.append(batch, skip_existing=True)
    assert [r.id for r in again] == [batch[2].id]
    assert store.count() == 3
    assert verify(store).ok


def test_reopening_a_store_keeps_the_chain(db_url: str) -> None:
    first = AuditStore.open(db_url)
    first.append(make_records(2))
    first.db.close()
    second = AuditStore.open(db_url)  # migrations run again, idempotently
    second.append(make_records(1, start=2))
    assert second.count() == 3
    assert verify(second).ok
    second.db.close()


def test_appending_nothing_changes_nothing(store: AuditStore) -> None:
    assert store.append([]) == []
    assert store.chain_state().head.seq == 0
