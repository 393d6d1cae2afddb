"""verify() finds and locates every kind of tampering, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.audit import AuditRecord, AuditStore, ChainPoint, verify
from gateway.audit.chain import link_hash, seal
from gateway.audit.schema import (
    COLUMNS,
    INDEX_TABLES,
    INSERT_RECORD,
    index_values,
    to_row,
)
from tests.unit.audit.factory import make_record, make_records

COUNT = 5


@pytest.fixture
def chain(store: AuditStore) -> list[AuditRecord]:
    """Five chained records, appended in two batches."""
    return store.append(make_records(3)) + store.append(make_records(COUNT - 3, start=3))


def _row(store: AuditStore, seq: int) -> tuple[Any, ...]:
    rows = store.rows(after_seq=seq - 1, through_seq=seq, limit=1)
    assert rows, f"no record at seq {seq}"
    return rows[0]


def _rewrite(store: AuditStore, seq: int, record: AuditRecord) -> None:
    """Replace the row at `seq` with `record`'s columns, as a forger with SQL access would."""
    sets = ", ".join(f"{c} = ?" for c in COLUMNS)
    store.db.execute(f"UPDATE audit_records SET {sets} WHERE seq = ?", (*to_row(record), seq))


def _insert(store: AuditStore, record: AuditRecord) -> None:
    """Insert a forged record with its side-table rows, as a careful forger would."""
    store.db.execute(INSERT_RECORD, to_row(record))
    for table, column in INDEX_TABLES:
        for value in index_values(record)[table]:
            sql = f"INSERT INTO {table} (seq, {column}) VALUES (?, ?)"
            store.db.execute(sql, (record.seq, value))


def _renumber(store: AuditStore, from_seq: int, by: int) -> None:
    """Shift seq >= from_seq by `by`, in two steps so no unique check trips on the way."""
    for table in ("audit_records", "audit_groups", "audit_topics", "audit_actions"):
        store.db.execute(f"UPDATE {table} SET seq = -seq WHERE seq >= ?", (from_seq,))
        store.db.execute(f"UPDATE {table} SET seq = -seq + ? WHERE seq < 0", (by,))


def test_an_untouched_chain_verifies(store: AuditStore, chain: list[AuditRecord]) -> None:
    report = verify(store, page_size=2)  # pages of two: links across pages are checked too
    assert report.ok and report.problem is None
    assert report.checked == COUNT
    assert report.head == ChainPoint(seq=COUNT, hash=chain[-1].hash or "")


def test_progress_is_told_each_page_of_records_checked(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    told: list[int] = []
    assert verify(store, page_size=2, progress=told.append).ok
    assert told == [2, 2, 1]  # COUNT records, a page at a time


def test_an_empty_chain_verifies(store: AuditStore) -> None:
    report = verify(store)
    assert report.ok and report.checked == 0


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("status", 500),
        ("prompt", "something else entirely"),
        ("response_mode", "none"),
        ("user_id", "mallory"),
        ("department", "audit"),
        ("principal_groups", '["admins"]'),
        ("principal_groups", None),
        ("decisions", "[]"),
        ("topics", '["espionage"]'),
        ("cost_usd", 0.0),
        ("tokens_out", 0),
        ("ts", "2025-03-01T12:03:00Z"),
        ("model_requested", "gpt-4o"),
        ("route_taken", None),
        ("id", "00000000-0000-0000-0000-000000000000"),
        ("hash", "f" * 64),
    ],
)
def test_an_edited_column_is_found_at_its_record(
    store: AuditStore, chain: list[AuditRecord], column: str, value: object
) -> None:
    store.db.execute(f"UPDATE audit_records SET {column} = ? WHERE seq = 3", (value,))
    report = verify(store, page_size=2)
    assert not report.ok and report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("altered", 3)
    assert report.problem.record_id == _row(store, 3)[1]
    assert report.verified_through.seq == 2


def test_an_edited_prev_hash_breaks_the_link_there(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    store.db.execute("UPDATE audit_records SET prev_hash = ? WHERE seq = 3", ("a" * 64,))
    problem = verify(store).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("broken_link", 3, chain[2].id)


def test_a_row_that_is_no_record_is_found(store: AuditStore, chain: list[AuditRecord]) -> None:
    store.db.execute("UPDATE audit_records SET decisions = 'not json' WHERE seq = 2")
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("unreadable", 2)


def test_a_record_deleted_in_the_middle_is_found(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    store.db.execute("DELETE FROM audit_records WHERE seq = 3")
    problem = verify(store, page_size=2).problem
    assert problem is not None
    assert (problem.kind, problem.seq) == ("missing", 3)
    assert chain[3].id in problem.detail  # names the record found after the gap


def test_the_last_record_deleted_is_found_by_the_head_row(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    store.db.execute("DELETE FROM audit_records WHERE seq = ?", (COUNT,))
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("truncated", COUNT)


def test_a_record_inserted_in_the_middle_is_found(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    _renumber(store, 3, by=1)
    forged = seal(make_record(99), 3, chain[1].hash or "")  # a perfect link to seq 2
    _insert(store, forged)
    store.db.execute("UPDATE audit_chain SET seq = ? WHERE name = 'head'", (COUNT + 1,))
    problem = verify(store).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("broken_link", 4, chain[2].id)


def test_a_record_inserted_past_the_head_is_found(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    forged = seal(make_record(99), COUNT + 1, chain[-1].hash or "")
    _insert(store, forged)
    problem = verify(store).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("beyond_head", COUNT + 1, forged.id)


def test_a_record_inserted_before_the_anchor_is_found(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    forged = seal(make_record(99), 0, "0" * 64)
    _insert(store, forged)
    problem = verify(store).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("before_anchor", 0, forged.id)


def test_two_records_swapped_are_found(store: AuditStore, chain: list[AuditRecord]) -> None:
    for table in ("audit_records", *(t for t, _ in INDEX_TABLES)):
        for old, new in ((2, -1), (3, 2), (-1, 3)):
            store.db.execute(f"UPDATE {table} SET seq = ? WHERE seq = ?", (new, old))
    problem = verify(store).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("broken_link", 2, chain[2].id)


def test_a_record_rewritten_with_a_recomputed_hash_breaks_the_next_link(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    edited = chain[2].model_copy(update={"status": 403, "hash": None})
    _rewrite(store, 3, edited.model_copy(update={"hash": link_hash(chain[1].hash or "", edited)}))
    problem = verify(store).problem
    assert problem is not None
    assert (problem.kind, problem.seq, problem.record_id) == ("broken_link", 4, chain[3].id)
    assert "seq 3" in problem.detail


def test_the_last_record_rewritten_with_a_recomputed_hash_breaks_the_head(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    edited = chain[-1].model_copy(update={"status": 403, "hash": None})
    _rewrite(
        store, COUNT, edited.model_copy(update={"hash": link_hash(chain[-2].hash or "", edited)})
    )
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("head_mismatch", COUNT)


def test_an_edited_side_table_is_found(store: AuditStore, chain: list[AuditRecord]) -> None:
    store.db.execute("DELETE FROM audit_groups WHERE seq = 2 AND name = 'staff'")
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("index_mismatch", 2)


def test_a_topic_added_to_the_side_table_is_found(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    store.db.execute("INSERT INTO audit_topics (seq, topic) VALUES (4, 'espionage')")
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("index_mismatch", 4)


def test_a_tail_cut_with_the_head_rewritten_is_found_against_a_kept_head(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    kept = verify(store).head
    store.db.execute("DELETE FROM audit_records WHERE seq > 3")
    store.db.execute(
        "UPDATE audit_chain SET seq = 3, hash = ? WHERE name = 'head'", (chain[2].hash,)
    )
    assert verify(store).ok  # a consistent forgery, without outside knowledge...
    problem = verify(store, expected_head=kept).problem  # ...but not against a kept head
    assert problem is not None and problem.kind == "truncated"


def test_a_rewritten_chain_is_found_against_a_kept_head(
    store: AuditStore, chain: list[AuditRecord]
) -> None:
    kept = ChainPoint(seq=3, hash=chain[2].hash or "")
    prev = chain[1].hash or ""
    for n in (3, 4, 5):  # a forger re-links everything from seq 3 on
        forged = seal(chain[n - 1].model_copy(update={"status": 418}), n, prev)
        _rewrite(store, n, forged)
        prev = forged.hash or ""
    store.db.execute("UPDATE audit_chain SET hash = ? WHERE name = 'head'", (prev,))
    assert verify(store).ok
    problem = verify(store, expected_head=kept).problem
    assert problem is not None and (problem.kind, problem.seq) == ("head_mismatch", 3)
