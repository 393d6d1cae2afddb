"""Budgets per user, group and key, per UTC day and month, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.accounting.budgets import BudgetLedger, QuotaExceeded
from gateway.accounting.config import BudgetsConfig
from gateway.identity.principal import Principal
from gateway.storage.database import Database
from tests.unit.accounting.budget_worker import reserve_in_turn

JUNE_3 = datetime(2025, 6, 3, 12, 0, tzinfo=UTC).timestamp()
DAY = 86_400.0


class Clock:
    """Seconds since the epoch, moved by the test."""

    def __init__(self, now: float = JUNE_3) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def person(user: str, *groups: str, key: str | None = None) -> Principal:
    return Principal(user_id=user, auth_method="test", groups=groups, key_id=key)


ALICE = person("alice", "eng")
BOB = person("bob", "eng")


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/budgets.db"
    else:
        url = request.getfixturevalue("postgres_url")
    database = Database(url)
    yield database
    database.close()


def ledger(db: Database, config: dict[str, Any], clock: Clock | None = None) -> BudgetLedger:
    return BudgetLedger(db, BudgetsConfig.model_validate(config), clock=clock or Clock())


async def spend(ledger: BudgetLedger, principal: Principal, usd: float) -> None:
    await ledger.settle(await ledger.reserve(principal, usd), usd)


@pytest.mark.asyncio
async def test_the_call_that_would_overspend_a_user_is_refused(db: Database) -> None:
    budgets = ledger(db, {"users": {"alice": {"usd_per_day": 1.0}}})
    await spend(budgets, ALICE, 0.4)
    await spend(budgets, ALICE, 0.4)
    with pytest.raises(QuotaExceeded) as refused:
        await budgets.reserve(ALICE, 0.4)
    error = refused.value
    assert (error.status, error.type, error.code) == (
        429,
        "insufficient_quota",
        "insufficient_quota",
    )
    assert "user 'alice'" in error.message and "$1.00 per-day limit" in error.message
    # Until 2025-06-04T00:00Z: 12 hours.
    assert error.headers == {"retry-after": str(12 * 3600), "x-should-retry": "false"}
    await spend(budgets, ALICE, 0.2)  # exactly the rest fits
    with pytest.raises(QuotaExceeded):
        await budgets.reserve(ALICE, 0.0)  # used up: even an unpriced call is refused
    await budgets.reserve(BOB, 0.5)  # nobody else is affected


@pytest.mark.asyncio
async def test_a_users_spend_counts_against_each_of_their_groups(db: Database) -> None:
    budgets = ledger(db, {"groups": {"eng": {"usd_per_month": 1.0}, "ops": {"usd_per_day": 5}}})
    await spend(budgets, person("alice", "eng", "ops"), 0.7)
    with pytest.raises(QuotaExceeded, match=r"group 'eng'.*per-month"):
        await budgets.reserve(BOB, 0.5)
    await budgets.reserve(BOB, 0.3)
    report = await budgets.spend(person("carol", "ops"))
    assert report["group:ops"].day.spent_usd == pytest.approx(0.7)
    assert report["group:ops"].day.limit_usd == 5


@pytest.mark.asyncio
async def test_per_member_limits_apply_to_each_member_on_their_own(db: Database) -> None:
    config = {
        "groups": {
            "contractors": {"per_member": {"usd_per_day": 1.0}},
            "interns": {"per_member": {"usd_per_day": 0.5, "usd_per_month": 9}},
        },
        "users": {"dave": {"usd_per_day": 10}},
        "default_user": {"usd_per_day": 100},
    }
    budgets = ledger(db, config)
    carol, erin = person("carol", "contractors"), person("erin", "contractors", "interns")
    await spend(budgets, carol, 0.9)
    await budgets.reserve(erin, 0.5)  # her own budget, not carol's
    with pytest.raises(QuotaExceeded, match="per-member limit of group 'contractors'"):
        await budgets.reserve(carol, 0.2)
    # The strictest per-member limit of erin's groups is interns' $0.50 a day.
    with pytest.raises(QuotaExceeded, match="per-member limit of group 'interns'"):
        await budgets.reserve(erin, 0.1)
    # A user listed by name gets their own limit instead.
    await spend(budgets, person("dave", "contractors"), 5.0)


@pytest.mark.asyncio
async def test_a_key_budget_limits_that_key_only(db: Database) -> None:
    budgets = ledger(db, {"keys": {"k1": {"usd_per_day": 1.0}}})
    with_key = person("alice", key="k1")
    await spend(budgets, with_key, 0.8)
    with pytest.raises(QuotaExceeded, match="API key 'k1'"):
        await budgets.reserve(with_key, 0.3)
    await budgets.reserve(person("alice", key="k2"), 0.3)
    await budgets.reserve(person("alice"), 0.3)


@pytest.mark.asyncio
async def test_default_user_applies_to_users_not_listed(db: Database) -> None:
    budgets = ledger(db, {"default_user": {"usd_per_day": 0.5}, "users": {"alice": {}}})
    with pytest.raises(QuotaExceeded, match="user 'bob'"):
        await budgets.reserve(BOB, 0.6)
    await budgets.reserve(ALICE, 0.6)  # listed with no limits: unlimited


@pytest.mark.asyncio
async def test_a_zero_budget_refuses_everything(db: Database) -> None:
    budgets = ledger(db, {"groups": {"blocked": {"usd_per_month": 0}}})
    with pytest.raises(QuotaExceeded):
        await budgets.reserve(person("mallory", "blocked"), 0.0)


@pytest.mark.asyncio
async def test_day_and_month_limits_roll_over_at_utc_midnight_and_month_start(
    db: Database,
) -> None:
    clock = Clock(datetime(2025, 6, 29, 23, 0, tzinfo=UTC).timestamp())
    budgets = ledger(db, {"users": {"alice": {"usd_per_day": 1.0, "usd_per_month": 1.5}}}, clock)
    await spend(budgets, ALICE, 1.0)
    with pytest.raises(QuotaExceeded, match="per-day"):
        await budgets.reserve(ALICE, 0.1)
    clock.now += 3600  # 2025-06-30T00:00Z: a new day, the same month
    await spend(budgets, ALICE, 0.5)
    with pytest.raises(QuotaExceeded, match="per-month") as refused:
        await budgets.reserve(ALICE, 0.1)
    assert refused.value.headers["retry-after"] == str(int(DAY))  # until 2025-07-01T00:00Z
    clock.now += DAY
    await spend(budgets, ALICE, 1.0)
    report = await budgets.spend(ALICE)
    assert report["user:alice"].day.spent_usd == pytest.approx(1.0)
    assert report["user:alice"].month.spent_usd == pytest.approx(1.0)


@pytest.mark.asyncio
async def test_outstanding_reservations_count_until_released(db: Database) -> None:
    budgets = ledger(db, {"users": {"alice": {"usd_per_day": 1.0}}})
    first = await budgets.reserve(ALICE, 0.6)
    with pytest.raises(QuotaExceeded, match=r"used \$0\.6000"):
        await budgets.reserve(ALICE, 0.6)
    await budgets.release(first)
    second = await budgets.reserve(ALICE, 0.6)
    report = await budgets.spend(ALICE)
    assert report["user:alice"].day.reserved_usd == pytest.approx(0.6)
    assert report["user:alice"].day.spent_usd == 0
    await budgets.release(second)
    assert (await budgets.spend(ALICE))["user:alice"].day.reserved_usd == 0


@pytest.mark.asyncio
async def test_settle_replaces_the_estimate_by_the_actual_cost(db: Database) -> None:
    budgets = ledger(db, {"users": {"alice": {"usd_per_day": 1.0}}})
    reservation = await budgets.reserve(ALICE, 0.9)
    await budgets.settle(reservation, 0.1)
    await budgets.settle(reservation, 0.1)  # a second settle changes nothing
    await budgets.release(reservation)  # nor does a release after it
    day = (await budgets.spend(ALICE))["user:alice"].day
    assert (day.spent_usd, day.reserved_usd) == (pytest.approx(0.1), 0)
    streamed = await budgets.reserve(ALICE, 0.1)
    await budgets.settle(streamed, 0.85)  # the real cost may exceed the estimate
    assert (await budgets.spend(ALICE))["user:alice"].day.spent_usd == pytest.approx(0.95)


@pytest.mark.asyncio
async def test_a_reservation_never_settled_stops_counting_after_its_ttl(db: Database) -> None:
    clock = Clock()
    config = {"users": {"alice": {"usd_per_day": 1.0}}, "reservation_ttl_s": 600}
    budgets = ledger(db, config, clock)
    await budgets.reserve(ALICE, 0.9)  # its replica dies: never settled
    with pytest.raises(QuotaExceeded):
        await budgets.reserve(ALICE, 0.9)
    clock.now += 600
    await budgets.reserve(ALICE, 0.9)


@pytest.mark.asyncio
async def test_spend_is_recorded_for_users_and_keys_without_limits(db: Database) -> None:
    budgets = ledger(db, {})
    await spend(budgets, person("alice", "eng", key="k1"), 0.25)
    report = await budgets.spend(person("alice", "eng", key="k1"))
    assert set(report) == {"user:alice", "key:k1"}  # groups without a budget are not tracked
    assert report["key:k1"].month.spent_usd == pytest.approx(0.25)
    assert report["user:alice"].month.limit_usd is None


@pytest.mark.asyncio
async def test_concurrent_reservations_never_overspend_together(db: Database) -> None:
    budgets = ledger(db, {"groups": {"eng": {"usd_per_day": 1.0}}})
    # Twenty requests of $0.15 race for a $1.00 budget: exactly six fit.
    results = await asyncio.gather(
        *(budgets.reserve(person(f"user{i}", "eng"), 0.15) for i in range(20)),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 14
    assert len(results) - len(refused) == 6
    report = await budgets.spend(person("x", "eng"))
    assert report["group:eng"].day.reserved_usd == pytest.approx(0.9)


def test_processes_sharing_one_sqlite_file_never_overspend_together(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.db"
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(4), context.Queue()
    processes = [
        context.Process(target=reserve_in_turn, args=(url, JUNE_3, 0.75, 5, barrier, results))
        for _ in range(4)
    ]
    for process in processes:
        process.start()
    admitted = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0
    # Twenty $0.10 reservations from four processes against $0.75: exactly seven fit.
    assert sum(admitted) == 7
