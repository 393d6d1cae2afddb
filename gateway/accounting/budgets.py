"""Spending budgets per user, group and API key, per UTC day and month, in the Database.

A request reserves its estimated cost before the upstream call and settles the real cost
after it (or releases the reservation when it failed):

    reservation = await ledger.reserve(principal, estimate_usd)   # QuotaExceeded if over
    try:
        ...call upstream...
        await ledger.settle(reservation, actual_usd)
    finally:
        await ledger.release(reservation)     # no-op once settled

A reservation is checked and written in one exclusive transaction (SQLite's BEGIN IMMEDIATE,
PostgreSQL's advisory lock), so concurrent requests on any number of replicas cannot together
spend past a limit: each sees the others' outstanding reservations. A reservation that is
never settled (its replica died) stops counting after `reservation_ttl_s`.

Money is stored as integer nano-USD so that sums are exact: a budget that fits k requests of
an estimate admits exactly k, whatever the float rounding of k * estimate.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from gateway.accounting.config import BudgetLimit, BudgetsConfig
from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.storage.database import Cursor, Database

Clock = Callable[[], float]
"""Seconds since the Unix epoch (UTC), like `time.time`."""

PeriodKind = Literal["day", "month"]
_PERIODS: tuple[PeriodKind, ...] = ("day", "month")
_NANO = 1_000_000_000

SCHEMA: tuple[str, ...] = (
    # Settled spend: one row per scope ("user:alice") and period ("day:2025-06-01").
    """CREATE TABLE IF NOT EXISTS budget_spend (
        scope TEXT NOT NULL,
        period TEXT NOT NULL,
        spent_nano BIGINT NOT NULL,
        PRIMARY KEY (scope, period)
    )""",
    # Outstanding reservations: one row per reservation, scope and period it holds.
    """CREATE TABLE IF NOT EXISTS budget_holds (
        reservation_id TEXT NOT NULL,
        scope TEXT NOT NULL,
        period TEXT NOT NULL,
        amount_nano BIGINT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (reservation_id, scope, period)
    )""",
    "CREATE INDEX IF NOT EXISTS budget_holds_by_scope ON budget_holds (scope, period)",
    "CREATE INDEX IF NOT EXISTS budget_holds_by_expiry ON budget_holds (expires_at)",
)


class QuotaExceeded(GatewayError):
    """A budget would be overspent: OpenAI's 429 `insufficient_quota`.

    Carries `retry-after` (seconds until the exhausted period ends) and `x-should-retry:
    false`, which the official SDKs honour instead of retrying a request that cannot pass.
    """

    status = 429
    type = "insufficient_quota"
    default_code = "insufficient_quota"


@dataclass(eq=False)
class Reservation:
    """An estimate held against a principal's budgets until settled or released.

    `scopes` are every scope the spend is recorded against ("user:alice", "group:eng",
    "key:k1"); `day` and `month` are the periods it counts in (those of `reserve`'s time).
    """

    id: str
    scopes: tuple[str, ...]
    day: str
    month: str
    estimate_usd: float
    held: bool = False  # whether the estimate is written against a limit (else nothing to free)
    closed: bool = field(default=False, repr=False)


@dataclass(frozen=True)
class PeriodSpend:
    """A scope's money in one period: settled spend, outstanding reservations, the limit."""

    spent_usd: float
    reserved_usd: float
    limit_usd: float | None


@dataclass(frozen=True)
class ScopeSpend:
    """A scope's spend in the current UTC day and month."""

    scope: str
    day: PeriodSpend
    month: PeriodSpend


@dataclass(frozen=True)
class _Check:
    scope: str
    period: PeriodKind
    limit_nano: int
    describes: str  # "group 'contractors'", for the refusal message


class BudgetLedger:
    """Budgets of users, groups and keys, kept in a `Database` shared by all replicas."""

    def __init__(
        self, db: Database, config: BudgetsConfig | None = None, *, clock: Clock = time.time
    ) -> None:
        self._db = db
        self._config = config or BudgetsConfig()
        self._clock = clock
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    async def reserve(self, principal: Principal, estimate_usd: float) -> Reservation:
        """Hold `estimate_usd` against every budget that applies to `principal`.

        Raises QuotaExceeded (naming the scope, period and limit) when, for any of them,
        settled spend + outstanding reservations + this estimate would pass the limit, or the
        budget is already used up. An estimate of 0 (price unknown) only fails on the latter.
        """
        if estimate_usd < 0:
            raise ValueError("estimate_usd must be >= 0")
        now = self._clock()
        periods = _period_keys(now)
        reservation = Reservation(
            id=uuid.uuid4().hex,
            scopes=self._recorded_scopes(principal),
            day=periods["day"],
            month=periods["month"],
            estimate_usd=estimate_usd,
        )
        checks = self._checks(principal)
        if checks:
            await asyncio.to_thread(
                self._reserve_sync, reservation, checks, _to_nano(estimate_usd), now
            )
        return reservation

    async def settle(self, reservation: Reservation, actual_usd: float) -> None:
        """Record `actual_usd` (the real cost, from the final usage, streams included) in
        place of the estimate. Settling or releasing a closed reservation does nothing."""
        actual = _to_nano(max(0.0, actual_usd))
        if reservation.closed:
            return
        if actual > 0 or reservation.held:
            await asyncio.to_thread(self._settle_sync, reservation, actual)
        reservation.closed = True

    async def release(self, reservation: Reservation) -> None:
        """Drop the reservation without spending anything (the call failed or was refused
        later). Safe to call after `settle`: it then does nothing."""
        if reservation.closed:
            return
        reservation.closed = True
        if reservation.held:
            await asyncio.to_thread(self._settle_sync, reservation, 0)

    async def spend(self, principal: Principal) -> dict[str, ScopeSpend]:
        """The current day's and month's spend of each scope `principal` is accounted in,
        by scope ("user:alice", "group:eng", "key:k1"), with the limits that apply."""
        scopes = self._recorded_scopes(principal)
        limits = {(c.scope, c.period): c.limit_nano for c in self._checks(principal)}
        now = self._clock()
        periods = _period_keys(now)
        spent, held = await asyncio.to_thread(self._totals_sync, scopes, periods, now)

        def period(scope: str, kind: PeriodKind) -> PeriodSpend:
            key = (scope, periods[kind])
            limit = limits.get((scope, kind))
            return PeriodSpend(
                spent_usd=spent.get(key, 0) / _NANO,
                reserved_usd=held.get(key, 0) / _NANO,
                limit_usd=None if limit is None else limit / _NANO,
            )

        return {s: ScopeSpend(s, period(s, "day"), period(s, "month")) for s in scopes}

    # --- which scopes and limits apply

    def _recorded_scopes(self, principal: Principal) -> tuple[str, ...]:
        # Groups without a budget are not recorded: a directory user may be in dozens.
        scopes = [f"user:{principal.user_id}"]
        scopes += [f"group:{g}" for g in principal.groups if g in self._config.groups]
        if principal.key_id is not None:
            scopes.append(f"key:{principal.key_id}")
        return tuple(dict.fromkeys(scopes))

    def _checks(self, principal: Principal) -> list[_Check]:
        config = self._config
        checks: list[_Check] = []
        if principal.key_id is not None and principal.key_id in config.keys:
            checks += _limit_checks(
                f"key:{principal.key_id}",
                config.keys[principal.key_id],
                f"API key '{principal.key_id}'",
            )
        user_scope = f"user:{principal.user_id}"
        user = f"user '{principal.user_id}'"
        if principal.user_id in config.users:
            checks += _limit_checks(user_scope, config.users[principal.user_id], user)
        else:
            member_limits: list[tuple[BudgetLimit, str]] = []
            for group in principal.groups:
                per_member = config.groups[group].per_member if group in config.groups else None
                if per_member is not None:
                    member_limits.append((per_member, group))
            if member_limits:
                for kind in _PERIODS:
                    # The strictest per-member limit of the user's groups, period by period.
                    candidates = [
                        (usd, group)
                        for limit, group in member_limits
                        if (usd := _limit_of(limit, kind)) is not None
                    ]
                    if candidates:
                        usd, group = min(candidates)
                        describes = f"{user} (per-member limit of group '{group}')"
                        checks.append(_Check(user_scope, kind, _to_nano(usd), describes))
            elif config.default_user is not None:
                checks += _limit_checks(user_scope, config.default_user, user)
        for group in dict.fromkeys(principal.groups):
            if group in config.groups:
                checks += _limit_checks(f"group:{group}", config.groups[group], f"group '{group}'")
        return checks

    # --- database work (in a worker thread)

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if not self._schema_ready:
                self._db.migrate(SCHEMA)
                self._schema_ready = True

    def _reserve_sync(
        self, reservation: Reservation, checks: Sequence[_Check], estimate: int, now: float
    ) -> None:
        self._ensure_schema()
        periods = {"day": reservation.day, "month": reservation.month}
        scopes = sorted({c.scope for c in checks})
        with self._db.transaction(exclusive=True) as cur:
            # Reservations whose replica never came back: forget them, they no longer count.
            cur.execute("DELETE FROM budget_holds WHERE expires_at <= ?", (now,))
            spent = _spent(cur, scopes, periods.values())
            held = _held(cur, scopes, periods.values(), now)
            for check in checks:
                key = (check.scope, periods[check.period])
                used = spent.get(key, 0) + held.get(key, 0)
                if used >= check.limit_nano or used + estimate > check.limit_nano:
                    raise _refusal(check, used, estimate, now)
            if estimate > 0:
                expires = now + self._config.reservation_ttl_s
                held_keys = dict.fromkeys((c.scope, periods[c.period]) for c in checks)
                cur.executemany(
                    "INSERT INTO budget_holds"
                    " (reservation_id, scope, period, amount_nano, expires_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [
                        (reservation.id, scope, period, estimate, expires)
                        for scope, period in held_keys
                    ],
                )
                reservation.held = True

    def _settle_sync(self, reservation: Reservation, actual: int) -> None:
        self._ensure_schema()
        # Exclusive, like reserve: a reserve must never see the hold gone but not yet the
        # spend that replaced it (PostgreSQL reads each statement at its own snapshot).
        with self._db.transaction(exclusive=True) as cur:
            cur.execute("DELETE FROM budget_holds WHERE reservation_id = ?", (reservation.id,))
            if actual > 0:
                cur.executemany(
                    "INSERT INTO budget_spend (scope, period, spent_nano) VALUES (?, ?, ?)"
                    " ON CONFLICT (scope, period)"
                    " DO UPDATE SET spent_nano = budget_spend.spent_nano + excluded.spent_nano",
                    [
                        (scope, period, actual)
                        for scope in reservation.scopes
                        for period in (reservation.day, reservation.month)
                    ],
                )

    def _totals_sync(
        self, scopes: Sequence[str], periods: dict[PeriodKind, str], now: float
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        self._ensure_schema()
        with self._db.transaction() as cur:
            return _spent(cur, scopes, periods.values()), _held(cur, scopes, periods.values(), now)


def _limit_of(limit: BudgetLimit, kind: PeriodKind) -> float | None:
    return limit.usd_per_day if kind == "day" else limit.usd_per_month


def _limit_checks(scope: str, limit: BudgetLimit, describes: str) -> list[_Check]:
    return [
        _Check(scope, kind, _to_nano(usd), describes)
        for kind in _PERIODS
        if (usd := _limit_of(limit, kind)) is not None
    ]


def _in(values: Sequence[str]) -> str:
    return ", ".join("?" for _ in values)


def _spent(
    cur: Cursor, scopes: Sequence[str], periods: Iterable[str]
) -> dict[tuple[str, str], int]:
    period_list = list(periods)
    cur.execute(
        f"SELECT scope, period, spent_nano FROM budget_spend"
        f" WHERE scope IN ({_in(scopes)}) AND period IN ({_in(period_list)})",
        [*scopes, *period_list],
    )
    return {(row[0], row[1]): int(row[2]) for row in cur.fetchall()}


def _held(
    cur: Cursor, scopes: Sequence[str], periods: Iterable[str], now: float
) -> dict[tuple[str, str], int]:
    period_list = list(periods)
    cur.execute(
        f"SELECT scope, period, SUM(amount_nano) FROM budget_holds"
        f" WHERE scope IN ({_in(scopes)}) AND period IN ({_in(period_list)})"
        " AND expires_at > ? GROUP BY scope, period",
        [*scopes, *period_list, now],
    )
    return {(row[0], row[1]): int(row[2]) for row in cur.fetchall()}


def _refusal(check: _Check, used: int, estimate: int, now: float) -> QuotaExceeded:
    resets = _period_end(now, check.period)
    message = (
        f"Budget exceeded: {check.describes} has used ${used / _NANO:.4f} (spent and reserved)"
        f" of its ${check.limit_nano / _NANO:.2f} per-{check.period} limit; this request is"
        f" estimated at ${estimate / _NANO:.4f}. The limit resets at"
        f" {resets.strftime('%Y-%m-%dT%H:%M:%SZ')}."
    )
    retry_after = max(1, int((resets.timestamp() - now) + 0.999))
    return QuotaExceeded(
        message, headers={"retry-after": str(retry_after), "x-should-retry": "false"}
    )


def _period_keys(now: float) -> dict[PeriodKind, str]:
    moment = datetime.fromtimestamp(now, UTC)
    return {"day": f"day:{moment:%Y-%m-%d}", "month": f"month:{moment:%Y-%m}"}


def _period_end(now: float, kind: PeriodKind) -> datetime:
    moment = datetime.fromtimestamp(now, UTC)
    day_start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "day":
        return day_start + timedelta(days=1)
    month_start = day_start.replace(day=1)
    return (month_start + timedelta(days=32)).replace(day=1)


def _to_nano(usd: float) -> int:
    return round(usd * _NANO)
