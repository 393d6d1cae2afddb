"""Questions compliance asks of the trail: filtered, paginated listings and aggregations.

Filters are plain equality on indexed columns, and membership through the side tables for
groups, topics and policy actions (`seq IN (SELECT seq FROM audit_topics WHERE topic = ?)`), so
the SQL is the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.audit import schema
from gateway.audit.record import AuditRecord, Timestamp, format_ts
from gateway.audit.store import AuditStore
from gateway.audit.timespec import parse_instant

GroupBy = Literal["department", "topic", "user", "model", "group", "action"]
GROUP_BY: tuple[GroupBy, ...] = ("department", "topic", "user", "model", "group", "action")
FILTER_FIELDS = ("user", "department", "group", "topic", "action", "model", "since", "until")

# For each grouping: the key column and the side table to join, if any.
_GROUPINGS: dict[str, tuple[str, str | None]] = {
    "department": ("r.department", None),
    "user": ("r.user_id", None),
    "model": ("r.model_requested", None),
    "group": ("x.name", "audit_groups"),
    "topic": ("x.topic", "audit_topics"),
    "action": ("x.action", "audit_actions"),
}


class AuditFilter(BaseModel):
    """Which records a query is about; every field left empty matches everything."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(None, description="the principal's user id")
    department: str | None = None
    group: str | None = Field(None, description="one of the principal's groups")
    topic: str | None = None
    action: str | None = Field(None, description="a policy action taken, e.g. block")
    model: str | None = Field(None, description="the model the client asked for")
    since: Timestamp | None = Field(None, description="at or after this instant")
    until: Timestamp | None = Field(None, description="before this instant")

    @classmethod
    def parse(cls, values: Mapping[str, str | None], now: datetime) -> AuditFilter:
        """A filter from text (CLI options, query strings); `since`/`until` may be ages (7d).

        Raises ValueError (a pydantic ValidationError for unknown names) naming the field.
        """
        fields: dict[str, Any] = {k: v for k, v in values.items() if v not in (None, "")}
        for name in ("since", "until"):
            if name in fields:
                try:
                    fields[name] = parse_instant(fields[name], now)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return cls.model_validate(fields)

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition on `audit_records r` and its parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        for value, clause in (
            (self.user, "r.user_id = ?"),
            (self.department, "r.department = ?"),
            (self.model, "r.model_requested = ?"),
            (self.group, "r.seq IN (SELECT seq FROM audit_groups WHERE name = ?)"),
            (self.topic, "r.seq IN (SELECT seq FROM audit_topics WHERE topic = ?)"),
            (self.action, "r.seq IN (SELECT seq FROM audit_actions WHERE action = ?)"),
            (_ts(self.since), "r.ts >= ?"),
            (_ts(self.until), "r.ts < ?"),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return " AND ".join(clauses) or "1 = 1", params


def _ts(moment: datetime | None) -> str | None:
    # Stored timestamps are fixed-width UTC text: comparing text compares instants.
    return format_ts(moment) if moment is not None else None


class RecordPage(BaseModel):
    """One page of records, newest first, and the cursor of the next page (None: last)."""

    records: list[AuditRecord]
    next_cursor: str | None = None


class SummaryRow(BaseModel):
    """Totals for one value of the grouping key (None: records without one)."""

    key: str | None
    count: int
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cost_avoided_usd: float = 0.0


def list_records(
    store: AuditStore, where: AuditFilter, *, limit: int = 100, cursor: str | None = None
) -> RecordPage:
    """Records matching `where`, newest first; pass `next_cursor` back for the next page."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    condition, params = where.where()
    if cursor is not None:
        condition += " AND r.seq < ?"
        params.append(_cursor_seq(cursor))
    rows = store.db.fetchall(
        f"SELECT {schema.SELECT_STORED} FROM audit_records r WHERE {condition} "
        "ORDER BY r.seq DESC LIMIT ?",
        (*params, limit + 1),
    )
    records = [store.record(row) for row in rows[:limit]]
    more = len(rows) > limit
    return RecordPage(records=records, next_cursor=str(records[-1].seq) if more else None)


def _cursor_seq(cursor: str) -> int:
    try:
        return int(cursor)
    except ValueError:
        raise ValueError(f"cursor {cursor!r} is not one this API gave out") from None


def iter_records(
    store: AuditStore, where: AuditFilter, *, page_size: int = 1000
) -> Iterator[AuditRecord]:
    """Every record matching `where`, oldest first, read a page at a time."""
    condition, params = where.where()
    after = -1
    while True:
        rows = store.db.fetchall(
            f"SELECT {schema.SELECT_STORED} FROM audit_records r "
            f"WHERE {condition} AND r.seq > ? ORDER BY r.seq LIMIT ?",
            (*params, after, page_size),
        )
        for row in rows:
            yield store.record(row)
        if len(rows) < page_size:
            return
        after = rows[-1][0]


def count_records(store: AuditStore, where: AuditFilter) -> int:
    """How many records match `where`."""
    condition, params = where.where()
    row = store.db.fetchone(f"SELECT COUNT(*) FROM audit_records r WHERE {condition}", params)
    return int(row[0]) if row else 0


def summarize(store: AuditStore, where: AuditFilter, by: GroupBy) -> list[SummaryRow]:
    """Counts, token and cost totals of the records matching `where`, per value of `by`.

    Grouped by topic, group or action, a record counts once under each of its values.
    """
    key, table = _GROUPINGS[by]
    join = f"LEFT JOIN {table} x ON x.seq = r.seq" if table else ""
    condition, params = where.where()
    rows = store.db.fetchall(
        f"SELECT {key}, COUNT(*), COALESCE(SUM(r.tokens_in), 0), "
        f"COALESCE(SUM(r.tokens_out), 0), COALESCE(SUM(r.cost_usd), 0), "
        f"COALESCE(SUM(r.cost_avoided_usd), 0) "
        f"FROM audit_records r {join} WHERE {condition} GROUP BY {key}",
        params,
    )
    summary = [
        # PostgreSQL sums BIGINT as NUMERIC (a Decimal here): normalise the types.
        SummaryRow(
            key=k,
            count=int(n),
            tokens_in=int(t_in),
            tokens_out=int(t_out),
            cost_usd=float(c),
            cost_avoided_usd=float(saved),
        )
        for k, n, t_in, t_out, c, saved in rows
    ]
    # Sorted here: SQLite and PostgreSQL place NULL keys differently.
    summary.sort(key=lambda s: (-s.count, s.key is None, s.key or ""))
    return summary


class CacheOutcome(BaseModel):
    """How the cache answered one model's requests: counts per phase (miss, bypass, exact,
    normalized, semantic) and the cost its hits avoided."""

    model: str
    phases: dict[str, int]
    cost_avoided_usd: float

    @property
    def hits(self) -> int:
        return sum(self.phases.get(phase, 0) for phase in ("exact", "normalized", "semantic"))

    @property
    def lookups(self) -> int:
        """Requests the cache was asked about (bypassed ones excluded)."""
        return self.hits + self.phases.get("miss", 0)

    @property
    def hit_rate(self) -> float | None:
        return self.hits / self.lookups if self.lookups else None


def cache_outcomes(store: AuditStore, where: AuditFilter) -> list[CacheOutcome]:
    """Per model, how the cache answered the records matching `where` (records of requests
    the cache does not apply to are left out), busiest first."""
    condition, params = where.where()
    rows = store.db.fetchall(
        "SELECT r.model_requested, r.cache_phase, COUNT(*), "
        "COALESCE(SUM(r.cost_avoided_usd), 0) FROM audit_records r "
        f"WHERE {condition} AND r.cache_phase IS NOT NULL "
        "GROUP BY r.model_requested, r.cache_phase",
        params,
    )
    outcomes: dict[str, CacheOutcome] = {}
    for model, phase, count, avoided in rows:
        outcome = outcomes.setdefault(
            str(model), CacheOutcome(model=str(model), phases={}, cost_avoided_usd=0.0)
        )
        outcome.phases[str(phase)] = int(count)
        outcome.cost_avoided_usd += float(avoided)
    return sorted(outcomes.values(), key=lambda o: (-sum(o.phases.values()), o.model))
