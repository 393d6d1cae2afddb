"""The cache's entry log: one table that every cache replica appends to and replays.

Each replica holds the whole index in memory. An insert is appended to `cache_log` (its `seq`
becomes the entry id everywhere), then applied locally; every replica tails the log for rows
past the last `seq` it applied, so an entry inserted through one replica is served by all of
them within one sync interval. Invalidation deletes the insert rows and appends one `delete`
row per entry, so a replica that starts later never sees the entry and running ones drop it.
The log is also the persistence: a restarted replica rebuilds its index from it (vectors are
stored, nothing is embedded again).

Appends hold an exclusive transaction (SQLite's write lock, PostgreSQL's advisory lock), so
sequence numbers become visible in order and a tailing reader never skips one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gateway.cache.lookup import Selector
from gateway.storage import Database

_DDL = {
    "sqlite": """CREATE TABLE IF NOT EXISTS cache_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        op TEXT NOT NULL,
        entry_id INTEGER,
        scope TEXT,
        model TEXT,
        text TEXT,
        response TEXT,
        vector BLOB,
        created_at REAL NOT NULL
    )""",
    "postgresql": """CREATE TABLE IF NOT EXISTS cache_log (
        seq BIGSERIAL PRIMARY KEY,
        op TEXT NOT NULL,
        entry_id BIGINT,
        scope TEXT,
        model TEXT,
        text TEXT,
        response TEXT,
        vector BYTEA,
        created_at DOUBLE PRECISION NOT NULL
    )""",
}
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS cache_log_model ON cache_log (model)",
    "CREATE INDEX IF NOT EXISTS cache_log_created ON cache_log (created_at)",
)
_INSERT_COLUMNS = "seq, op, entry_id, scope, model, text, response, vector, created_at"


@dataclass(frozen=True)
class LoggedEntry:
    """An entry as the log holds it; `entry_id` is the seq of its insert row."""

    entry_id: int
    scope: str
    model: str
    text: str
    response: str
    vector: np.ndarray
    created_at: float


@dataclass(frozen=True)
class LogOp:
    """One row of the log, in `seq` order: an entry inserted, or one deleted."""

    seq: int
    op: Literal["insert", "delete"]
    entry: LoggedEntry | None = None  # for inserts
    deleted: int | None = None  # for deletes


class CacheLog:
    """The `cache_log` table in the gateway's database (SQLite or PostgreSQL). Blocking:
    call it from a worker thread."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate([_DDL[db.dialect], *_INDEXES])

    def append(self, entry: LoggedEntry) -> int:
        """Append an insert row; return its seq, the entry's id on every replica."""
        with self.db.transaction(exclusive=True) as cur:
            cur.execute(
                "INSERT INTO cache_log (op, scope, model, text, response, vector, created_at)"
                " VALUES ('insert', ?, ?, ?, ?, ?, ?) RETURNING seq",
                (
                    entry.scope,
                    entry.model,
                    entry.text,
                    entry.response,
                    _blob(entry.vector),
                    entry.created_at,
                ),
            )
            return int(cur.fetchone()[0])

    def since(self, seq: int, limit: int = 5000) -> list[LogOp]:
        """Rows after `seq`, oldest first, at most `limit`."""
        rows = self.db.fetchall(
            f"SELECT {_INSERT_COLUMNS} FROM cache_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [_op(row) for row in rows]

    def invalidate(self, selector: Selector, now: float) -> list[int]:
        """Delete the selected entries from the log and announce each to running replicas."""
        if selector.empty():
            raise ValueError("an invalidation must select something")
        where, params = _where(selector)
        with self.db.transaction(exclusive=True) as cur:
            cur.execute(f"SELECT seq FROM cache_log WHERE op = 'insert' AND {where}", params)
            ids = [int(row[0]) for row in cur.fetchall()]
            for entry_id in ids:
                cur.execute("DELETE FROM cache_log WHERE seq = ?", (entry_id,))
                cur.execute(
                    "INSERT INTO cache_log (op, entry_id, created_at) VALUES ('delete', ?, ?)",
                    (entry_id, now),
                )
        return ids

    def compact(self, *, expired_before: float, keep: int, deletes_before: float) -> int:
        """Drop what no replica needs any more: inserts past their TTL or beyond the newest
        `keep`, and delete rows older than any running replica's lag. Returns rows removed."""
        with self.db.transaction(exclusive=True) as cur:
            cur.execute(
                "DELETE FROM cache_log WHERE op = 'insert' AND created_at < ?", (expired_before,)
            )
            removed = cur.rowcount
            cur.execute(
                "SELECT seq FROM cache_log WHERE op = 'insert' ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (keep,),
            )
            row = cur.fetchone()
            if row is not None:
                cur.execute("DELETE FROM cache_log WHERE op = 'insert' AND seq <= ?", (row[0],))
                removed += cur.rowcount
            cur.execute(
                "DELETE FROM cache_log WHERE op = 'delete' AND created_at < ?", (deletes_before,)
            )
            removed += cur.rowcount
        return removed

    def counts(self) -> dict[str, int]:
        """Insert and delete rows currently in the log."""
        rows = self.db.fetchall("SELECT op, COUNT(*) FROM cache_log GROUP BY op")
        return {str(op): int(n) for op, n in rows}


def _where(selector: Selector) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if selector.entry_ids:
        clauses.append(f"seq IN ({', '.join('?' for _ in selector.entry_ids)})")
        params.extend(selector.entry_ids)
    if selector.scope:
        clauses.append("scope = ?")
        params.append(selector.scope)
    if selector.model:
        clauses.append("model = ?")
        params.append(selector.model)
    if selector.created_before is not None:
        clauses.append("created_at < ?")
        params.append(selector.created_before)
    return " AND ".join(clauses), params


def _blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def _op(row: Sequence[Any]) -> LogOp:
    seq, op, entry_id, scope, model, text, response, vector, created_at = row
    if op == "delete":
        return LogOp(int(seq), "delete", deleted=int(entry_id))
    entry = LoggedEntry(
        entry_id=int(seq),
        scope=str(scope),
        model=str(model),
        text=str(text),
        response=str(response),
        vector=np.frombuffer(bytes(vector), dtype=np.float32),
        created_at=float(created_at),
    )
    return LogOp(int(seq), "insert", entry=entry)
