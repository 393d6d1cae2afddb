"""Filters, pagination, aggregations and exports, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from gateway.audit import AuditRecord, AuditStore
from gateway.audit.export import export_chunks
from gateway.audit.query import (
    AuditFilter,
    count_records,
    iter_records,
    list_records,
    summarize,
)
from gateway.audit.schema import COLUMNS
from tests.unit.audit.factory import T0, make_record, make_records

COUNT = 12


@pytest.fixture
def stored(store: AuditStore) -> list[AuditRecord]:
    """Twelve records: users cycle over 3, departments and groups over 2, topics over 3."""
    records = make_records(COUNT)
    records.append(make_record(COUNT, principal=None, topics=[], decisions=[], status=401))
    return store.append(records)


def _seqs(store: AuditStore, **where: object) -> list[int]:
    page = list_records(store, AuditFilter.model_validate(where), limit=100)
    return sorted(r.seq or 0 for r in page.records)


def test_no_filter_lists_everything_newest_first(
    store: AuditStore, stored: list[AuditRecord]
) -> None:
    page = list_records(store, AuditFilter(), limit=100)
    assert [r.seq for r in page.records] == list(range(COUNT + 1, 0, -1))
    assert page.records[-1] == stored[0]
    assert page.next_cursor is None


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"user": "user1"}, [2, 5, 8, 11]),
        ({"department": "eng"}, [2, 4, 6, 8, 10, 12]),
        ({"model": "sim-small"}, [1, 3, 5, 7, 9, 11, 13]),
        ({"group": "staff"}, list(range(1, COUNT + 1))),  # every principal is in two groups
        ({"group": "builders"}, [2, 4, 6, 8, 10, 12]),
        ({"topic": "payroll"}, [2, 5, 8, 11]),
        ({"action": "block"}, [2, 4, 6, 8, 10, 12]),
        ({"user": "user0", "topic": "taxes", "action": "redact"}, [1, 7]),
        ({"group": "nobody"}, []),
    ],
)
def test_filters_select_the_matching_records(
    store: AuditStore, stored: list[AuditRecord], where: dict[str, str], expected: list[int]
) -> None:
    assert _seqs(store, **where) == expected


def test_a_time_range_includes_since_and_excludes_until(
    store: AuditStore, stored: list[AuditRecord]
) -> None:
    since, until = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    assert _seqs(store, since=since, until=until) == [3, 4, 5]


def test_filters_parse_from_text_with_ages() -> None:
    now = T0 + timedelta(days=10)
    where = AuditFilter.parse({"user": "u", "since": "7d", "until": "2025-03-31", "topic": ""}, now)
    assert where.since == now - timedelta(days=7)
    assert where.until is not None and where.until.isoformat() == "2025-03-31T00:00:00+00:00"
    assert where.topic is None


def test_a_bad_time_names_the_field() -> None:
    with pytest.raises(ValueError, match="since"):
        AuditFilter.parse({"since": "last tuesday"}, T0)


def test_pages_follow_the_cursor_without_gaps_or_repeats(
    store: AuditStore, stored: list[AuditRecord]
) -> None:
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = list_records(store, AuditFilter(department="eng"), limit=4, cursor=cursor)
        seen += [r.seq or 0 for r in page.records]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [12, 10, 8, 6, 4, 2]
    assert pages == 2


def test_a_foreign_cursor_is_refused(store: AuditStore) -> None:
    with pytest.raises(ValueError, match="cursor"):
        list_records(store, AuditFilter(), cursor="abc")


def test_iteration_is_oldest_first_across_pages(
    store: AuditStore, stored: list[AuditRecord]
) -> None:
    assert list(iter_records(store, AuditFilter(), page_size=5)) == stored


def test_counts_by_department(store: AuditStore, stored: list[AuditRecord]) -> None:
    rows = {r.key: r.count for r in summarize(store, AuditFilter(), "department")}
    assert rows == {"eng": 6, "finance": 6, None: 1}


def test_counts_by_topic_count_each_topic_of_a_record(
    store: AuditStore, stored: list[AuditRecord]
) -> None:
    store.append([make_record(50, topics=["taxes", "payroll"])])
    rows = {r.key: r.count for r in summarize(store, AuditFilter(), "topic")}
    assert rows == {"taxes": 5, "payroll": 5, "weather": 4, None: 1}


def test_tokens_and_cost_by_user(store: AuditStore, stored: list[AuditRecord]) -> None:
    rows = {r.key: r for r in summarize(store, AuditFilter(), "user")}
    user1 = [r for r in stored if r.principal and r.principal.user_id == "user1"]
    assert rows["user1"].count == len(user1)
    assert rows["user1"].tokens_in == sum(r.tokens_in or 0 for r in user1)
    assert rows["user1"].tokens_out == sum(r.tokens_out or 0 for r in user1)
    assert rows["user1"].cost_usd == pytest.approx(sum(r.cost_usd or 0 for r in user1))


def test_aggregations_take_filters(store: AuditStore, stored: list[AuditRecord]) -> None:
    rows = summarize(store, AuditFilter(group="analysts"), "model")
    assert [(r.key, r.count) for r in rows] == [("sim-small", 6)]


def test_csv_export_has_one_row_per_record_and_every_column(
    store: AuditStore, stored: list[AuditRecord]
) -> None:
    text = "".join(export_chunks(store, AuditFilter(), "csv", page_size=5))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(COLUMNS)
    assert [int(r["seq"]) for r in rows] == list(range(1, COUNT + 2))
    assert rows[1]["hash"] == stored[1].hash
    assert json.loads(rows[0]["topics"]) == ["taxes"]
    assert rows[0]["prompt"] == stored[0].prompt  # unicode intact


def test_json_export_reads_back_as_the_records(
    store: AuditStore, stored: list[AuditRecord]
) -> None:
    text = "".join(export_chunks(store, AuditFilter(topic="weather"), "json"))
    exported = [AuditRecord.model_validate(item) for item in json.loads(text)]
    assert exported == [r for r in stored if r.topics == ["weather"]]


def test_an_export_tells_progress_of_each_record_and_they_can_be_counted_first(
    store: AuditStore, stored: list[AuditRecord]
) -> None:
    where = AuditFilter(group="analysts")
    told: list[int] = []
    text = "".join(export_chunks(store, where, "csv", page_size=5, progress=told.append))
    exported = list(csv.DictReader(io.StringIO(text)))
    assert told == [1] * len(exported) and count_records(store, where) == len(exported) == 6


def test_an_empty_json_export_is_an_empty_list(store: AuditStore) -> None:
    assert json.loads("".join(export_chunks(store, AuditFilter(), "json"))) == []
