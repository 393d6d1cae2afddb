"""Retention cuts the old end of the chain and leaves the rest verifiable."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from gateway.audit import AuditStore, verify
from gateway.audit.retention import prune
from gateway.audit.timespec import parse_age, parse_instant
from gateway.storage import Database
from tests.unit.audit.factory import T0, make_record, make_records


def _clock(moment: datetime) -> Callable[[], datetime]:
    return lambda: moment


def test_prune_deletes_the_old_prefix_and_moves_the_anchor(store: AuditStore) -> None:
    sealed = store.append(make_records(10))  # one a minute from T0
    report = prune(store, timedelta(minutes=5), clock=_clock(T0 + timedelta(minutes=9)))
    assert report.problem is None
    assert report.deleted == 4  # minutes 0..3 are older than T0+4min
    assert (report.anchor.seq, report.anchor.hash) == (4, sealed[3].hash)
    assert store.count() == 6
    after = verify(store)
    assert after.ok and after.checked == 6 and after.anchor == report.anchor


def test_the_chain_goes_on_after_a_prune(store: AuditStore) -> None:
    store.append(make_records(6))
    prune(store, timedelta(minutes=1), clock=_clock(T0 + timedelta(minutes=4)))
    store.append(make_records(3, start=6))
    assert verify(store).ok


def test_everything_old_can_go_and_the_anchor_is_the_head(store: AuditStore) -> None:
    sealed = store.append(make_records(3))
    report = prune(store, timedelta(days=1), clock=_clock(T0 + timedelta(days=2)))
    assert report.deleted == 3 and report.anchor.hash == sealed[-1].hash
    assert store.count() == 0
    assert verify(store).ok
    store.append(make_records(1, start=3))
    assert verify(store).ok


def test_prune_never_cuts_the_chain_in_the_middle(store: AuditStore) -> None:
    # Several writers: a late-committed old record follows a newer one in the chain.
    store.append([make_record(0), make_record(8), make_record(1), make_record(9)])
    report = prune(store, timedelta(minutes=2), clock=_clock(T0 + timedelta(minutes=9)))
    assert report.deleted == 1  # seq 2 (minute 8) is kept, so seq 3 (minute 1) waits
    assert verify(store).ok


def test_nothing_to_prune_changes_nothing(store: AuditStore) -> None:
    store.append(make_records(3))
    report = prune(store, timedelta(days=90), clock=_clock(T0))
    assert (report.deleted, report.anchor.seq) == (0, 0)


def test_prune_refuses_to_erase_tampering(store: AuditStore) -> None:
    store.append(make_records(6))
    store.db.execute("UPDATE audit_records SET status = 500 WHERE seq = 2")
    report = prune(store, timedelta(minutes=1), clock=_clock(T0 + timedelta(minutes=5)))
    assert report.deleted == 0 and report.problem is not None
    assert (report.problem.kind, report.problem.seq) == ("altered", 2)
    assert store.count() == 6


def test_tampering_after_a_prune_is_still_found(store: AuditStore) -> None:
    store.append(make_records(8))
    prune(store, timedelta(minutes=2), clock=_clock(T0 + timedelta(minutes=5)))
    store.db.execute("DELETE FROM audit_records WHERE seq = 5")
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("missing", 5)


def test_moving_the_anchor_back_over_a_gap_is_found(store: AuditStore) -> None:
    store.append(make_records(6))
    prune(store, timedelta(minutes=2), clock=_clock(T0 + timedelta(minutes=5)))
    store.db.execute("UPDATE audit_chain SET seq = 0 WHERE name = 'anchor'")
    problem = verify(store).problem
    assert problem is not None and (problem.kind, problem.seq) == ("missing", 1)


@pytest.mark.parametrize(
    ("text", "age"),
    [("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2))],
)
def test_ages_parse(text: str, age: timedelta) -> None:
    assert parse_age(text) == age


def test_a_bad_age_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match="90d"):
        parse_age("ninety days")


def test_instants_parse_as_dates_datetimes_or_ages() -> None:
    assert parse_instant("2025-03-01", T0) == T0.replace(hour=0)
    assert parse_instant("2025-03-01T12:00:00Z", T0) == T0
    assert parse_instant("1d", T0) == T0 - timedelta(days=1)


class _PrunedMidVerify(AuditStore):
    """A store on which a prune (from another process, say) lands as verify starts reading."""

    pruned = False

    def stored_rows(self, *, after_seq: int, through_seq: int, limit: int) -> list[tuple[Any, ...]]:
        if not self.pruned:
            self.pruned = True
            other = AuditStore(self.db, migrate=False)
            prune(other, timedelta(minutes=2), clock=_clock(T0 + timedelta(minutes=6)))
        return super().stored_rows(after_seq=after_seq, through_seq=through_seq, limit=limit)


def test_a_prune_during_verify_is_not_mistaken_for_tampering(db_url: str) -> None:
    store = _PrunedMidVerify(Database(db_url))
    store.append(make_records(8))
    report = verify(store)
    assert store.pruned
    assert report.ok, report.problem
    assert report.checked == 4 and report.anchor.seq == 4
    store.db.close()
