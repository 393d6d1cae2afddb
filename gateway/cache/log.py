"""The cache's entry log: one table that every cache replica appends to and replays.

Each replica holds the whole index in memory. An insert is appended to `cache_log` (its `seq`
becomes the entry id everywhere), then applied locally; every replica tails the log for rows
past the last `seq` it applied, so an entry inserted through one replica is served by all of
them within one sync interval. Invalidation deletes the insert rows and appends one `delete`
row per entry, so a replica that starts later never sees the entry and running ones drop it.
The log is also the persistence: a restarted replica rebuilds its index from it (vectors are
stored, nothing is embedded again).

The learned phase's state travels the same way: every comparison of a stored answer with an
exploration's fresh answer is an `observe` row, a newer entry whose answer agrees with a
stored one a `join` row (both `op = 'observe'`, told apart by their payload's kind), each
replica's lookup counts a `traffic` row, and a stored answer's vector an `answer` row. Every
replica applies them in order, so replicas at the same position, and a restarted one, hold the
same evidence. Observation and traffic rows are kept for `learning_window_s`.

With the gateway's data keys (`storage.data_key`), the prompts, contexts and answers an
insert row keeps are sealed (AES-GCM, bound to their column and scope), like the audit
trail's content; vectors are not text and stay as they are.

Appends hold an exclusive transaction (SQLite's write lock, PostgreSQL's advisory lock), so
sequence numbers become visible in order and a tailing reader never skips one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gateway.cache.keys import exact_key
from gateway.cache.lookup import Selector
from gateway.storage import Database
from gateway.storage.sealing import Sealer, SealError, is_sealed

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
# Added after the first release: conversations' context, the answers' vectors (compared on
# inserts) and a JSON payload for observation rows.
_ADDED_COLUMNS = (
    ("context", "TEXT"),
    ("context_vector", "BLOB"),
    ("answer_vector", "BLOB"),
    ("payload", "TEXT"),
)
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS cache_log_model ON cache_log (model)",
    "CREATE INDEX IF NOT EXISTS cache_log_created ON cache_log (created_at)",
)
_COLUMNS = (
    "seq, op, entry_id, scope, model, text, response, vector, created_at,"
    " context, context_vector, answer_vector, payload"
)


@dataclass(frozen=True)
class LoggedEntry:
    """An entry as the log holds it; `entry_id` is the seq of its insert row."""

    entry_id: int
    scope: str
    model: str
    text: str
    response: str
    vector: np.ndarray | None  # None for exact-only entries
    created_at: float
    context: str = ""
    context_vector: np.ndarray | None = None


@dataclass(frozen=True)
class LoggedObservation:
    """A stored answer compared with another answer: entry `entry_id`'s answer was (or was
    not) `equivalent` to the answer of a request at `similarity`. `pair` names the other
    request, so a comparison counts once; `kind` is shadow or observed (an exploration), or
    join: `other`, a newer entry whose answer agrees, joins the entry's neighbourhood (a
    join is not evidence itself); `tokens` what the fresh answer cost (explorations only)."""

    entry_id: int
    pair: str
    similarity: float
    equivalent: bool
    kind: str
    created_at: float
    other: int | None = None
    tokens: int = 0
    weight: float = 1.0  # candidates it stands for in its alias's rates (shadows: 1 / rate)
    # How far the candidate led the nearest stored request with another answer (None: none
    # among the candidates); the learner keeps contested candidates' rates apart.
    margin: float | None = None


@dataclass(frozen=True)
class TrafficBatch:
    """Lookups one replica counted for an (alias, kind), and the estimated risks of the
    candidates it decided on among them: what the learned phase's error budget is spent on."""

    model: str
    kind: str
    lookups: int
    risks: tuple[float, ...]
    served: float  # the risks of the candidates served, summed


@dataclass(frozen=True)
class KeyChange:
    """An insert (`key`: the new entry's exact key) or a delete (`key` None) at `seq`."""

    seq: int
    entry_id: int
    key: str | None


@dataclass(frozen=True)
class LogOp:
    """One row of the log, in `seq` order: an entry inserted, deleted, or observed, or a
    replica's traffic counts."""

    seq: int
    op: Literal["insert", "delete", "observe", "traffic", "answer"]
    entry: LoggedEntry | None = None  # for inserts
    deleted: int | None = None  # for deletes
    observed: LoggedObservation | None = None  # for observations
    traffic: tuple[TrafficBatch, ...] = ()  # for traffic counts
    answered: tuple[int, np.ndarray] | None = None  # for answer vectors: (entry id, vector)
    created_at: float = 0.0


class CacheLog:
    """The `cache_log` table in the gateway's database (SQLite or PostgreSQL). Blocking:
    call it from a worker thread."""

    def __init__(self, db: Database, *, sealer: Sealer | None = None) -> None:
        """`sealer` (the gateway's data keys, `storage.data_key`) encrypts the prompts,
        contexts and answers the log keeps; older clear rows stay readable."""
        self.db = db
        self._sealer = sealer
        db.migrate([_DDL[db.dialect], *_INDEXES])
        self._add_columns()

    def _add_columns(self) -> None:
        if self.db.dialect == "postgresql":
            self.db.migrate(
                [
                    f"ALTER TABLE cache_log ADD COLUMN IF NOT EXISTS {name} "
                    + ("BYTEA" if kind == "BLOB" else kind)
                    for name, kind in _ADDED_COLUMNS
                ]
            )
            return
        present = {row[1] for row in self.db.fetchall("PRAGMA table_info(cache_log)")}
        missing = [(n, k) for n, k in _ADDED_COLUMNS if n not in present]
        if missing:
            self.db.migrate([f"ALTER TABLE cache_log ADD COLUMN {n} {k}" for n, k in missing])

    def append(self, entry: LoggedEntry) -> int:
        """Append an insert row; return its seq, the entry's id on every replica."""
        with self.db.transaction(exclusive=True) as cur:
            cur.execute(
                "INSERT INTO cache_log (op, scope, model, text, response, vector, created_at,"
                " context, context_vector)"
                " VALUES ('insert', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                (
                    entry.scope,
                    entry.model,
                    self._seal(entry.text, "text", entry.scope),
                    self._seal(entry.response, "response", entry.scope),
                    _blob(entry.vector),
                    entry.created_at,
                    self._seal(entry.context, "context", entry.scope),
                    _blob(entry.context_vector),
                ),
            )
            return int(cur.fetchone()[0])

    def answer_vector(self, entry_id: int, vector: np.ndarray, at: float) -> int:
        """Append the vector an entry's answer is compared by (computed after the entry was
        stored, so that storing it waits for nothing); return the row's seq."""
        with self.db.transaction(exclusive=True) as cur:
            cur.execute(
                "INSERT INTO cache_log (op, entry_id, answer_vector, created_at)"
                " VALUES ('answer', ?, ?, ?) RETURNING seq",
                (entry_id, _blob(vector, np.float16), at),
            )
            return int(cur.fetchone()[0])

    def observe(self, observations: Sequence[LoggedObservation]) -> list[int]:
        """Append observation rows, in order; return their seqs. Numbers are kept exactly (a
        JSON float reads back as the same float), so replicas learn exactly the same."""
        seqs = []
        with self.db.transaction(exclusive=True) as cur:
            for o in observations:
                payload = {
                    "pair": o.pair,
                    "s": o.similarity,
                    "ok": o.equivalent,
                    "kind": o.kind,
                    "other": o.other,
                    "tokens": o.tokens,
                    "w": o.weight,
                    "m": o.margin,
                }
                cur.execute(
                    "INSERT INTO cache_log (op, entry_id, payload, created_at)"
                    " VALUES ('observe', ?, ?, ?) RETURNING seq",
                    (o.entry_id, json.dumps(payload, separators=(",", ":")), o.created_at),
                )
                seqs.append(int(cur.fetchone()[0]))
        return seqs

    def count_traffic(self, batches: Sequence[TrafficBatch], at: float) -> int:
        """Append one row of traffic counts; return its seq."""
        payload = [
            {
                "model": b.model,
                "kind": b.kind,
                "lookups": b.lookups,
                "risks": list(b.risks),
                "served": b.served,
            }
            for b in batches
        ]
        with self.db.transaction(exclusive=True) as cur:
            cur.execute(
                "INSERT INTO cache_log (op, payload, created_at) VALUES ('traffic', ?, ?)"
                " RETURNING seq",
                (json.dumps(payload, separators=(",", ":")), at),
            )
            return int(cur.fetchone()[0])

    def since(self, seq: int, limit: int = 5000) -> list[LogOp]:
        """Rows after `seq`, oldest first, at most `limit`."""
        rows = self.db.fetchall(
            f"SELECT {_COLUMNS} FROM cache_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [self._opened(_op(row)) for row in rows]

    def key_changes(self, seq: int, limit: int = 5000) -> list[KeyChange]:
        """Inserts and deletes after `seq`, oldest first, at most `limit`, as entry ids and
        an insert's exact key (what a near cache follows; no answers or vectors are read)."""
        rows = self.db.fetchall(
            "SELECT seq, op, entry_id, scope, text, context, vector IS NULL FROM cache_log"
            " WHERE seq > ? AND op IN ('insert', 'delete') ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        changes = []
        for row_seq, op, entry_id, scope, text, context, raw in rows:
            if op == "delete":
                changes.append(KeyChange(int(row_seq), int(entry_id), None))
                continue
            text = self._open(str(text), "text", scope)
            context = self._open(str(context or ""), "context", scope)
            key = exact_key(scope, text, context, raw=bool(raw))
            changes.append(KeyChange(int(row_seq), int(row_seq), key))
        return changes

    def last_seq(self) -> int:
        """The newest row's seq (0 for an empty log)."""
        row = self.db.fetchone("SELECT COALESCE(MAX(seq), 0) FROM cache_log")
        return int(row[0]) if row is not None else 0

    def entries(
        self, limit: int, *, before: int | None = None, model: str | None = None
    ) -> list[LoggedEntry]:
        """Entries, newest first: at most `limit`, with ids below `before`, for `model`."""
        clauses: list[str] = ["op = 'insert'"]
        params: list[object] = []
        for value, clause in ((before, "seq < ?"), (model, "model = ?")):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        rows = self.db.fetchall(
            f"SELECT {_COLUMNS} FROM cache_log WHERE {' AND '.join(clauses)} "
            "ORDER BY seq DESC LIMIT ?",
            (*params, limit),
        )
        return [op.entry for op in map(self._opened, map(_op, rows)) if op.entry is not None]

    def _seal(self, value: str, column: str, scope: str) -> str:
        if self._sealer is None or not value:
            return value
        return self._sealer.seal(value, context=f"cache_log:{column}:{scope}")

    def _open(self, value: str, column: str, scope: str) -> str:
        if not is_sealed(value):
            return value
        if self._sealer is None:
            raise SealError("the cache log is sealed: set storage.data_key to read it")
        return self._sealer.open(value, context=f"cache_log:{column}:{scope}")

    def _opened(self, op: LogOp) -> LogOp:
        """An insert row with its sealed texts opened (a clear one is read as it is)."""
        entry = op.entry
        if entry is None or not any(
            is_sealed(v) for v in (entry.text, entry.response, entry.context)
        ):
            return op
        return dataclasses.replace(
            op,
            entry=dataclasses.replace(
                entry,
                text=self._open(entry.text, "text", entry.scope),
                response=self._open(entry.response, "response", entry.scope),
                context=self._open(entry.context, "context", entry.scope),
            ),
        )

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
                    "DELETE FROM cache_log WHERE op = 'answer' AND entry_id = ?", (entry_id,)
                )
                cur.execute(
                    "INSERT INTO cache_log (op, entry_id, created_at) VALUES ('delete', ?, ?)",
                    (entry_id, now),
                )
        return ids

    def compact(
        self,
        *,
        expired_before: float,
        keep: int,
        deletes_before: float,
        observations_before: float | None = None,
    ) -> int:
        """Drop what no replica needs any more: inserts past their TTL or beyond the newest
        `keep` (and their answers' vectors), delete rows older than any running replica's
        lag, and observations and traffic counts older than the learning window. Returns
        rows removed."""
        with self.db.transaction(exclusive=True) as cur:
            removed = 0
            if observations_before is not None:
                cur.execute(
                    "DELETE FROM cache_log WHERE op IN ('observe', 'traffic') AND created_at < ?",
                    (observations_before,),
                )
                removed += cur.rowcount
            cur.execute(
                "DELETE FROM cache_log WHERE op = 'insert' AND created_at < ?", (expired_before,)
            )
            removed += cur.rowcount
            cur.execute(
                "SELECT seq FROM cache_log WHERE op = 'insert' ORDER BY seq DESC LIMIT 1 OFFSET ?",
                (keep,),
            )
            row = cur.fetchone()
            if row is not None:
                cur.execute("DELETE FROM cache_log WHERE op = 'insert' AND seq <= ?", (row[0],))
                removed += cur.rowcount
            cur.execute(
                "DELETE FROM cache_log WHERE op = 'answer' AND entry_id NOT IN"
                " (SELECT seq FROM cache_log WHERE op = 'insert')"
            )
            removed += cur.rowcount
            cur.execute(
                "DELETE FROM cache_log WHERE op = 'delete' AND created_at < ?", (deletes_before,)
            )
            removed += cur.rowcount
        return removed

    def counts(self) -> dict[str, int]:
        """Rows currently in the log, by kind (insert, delete, observe, traffic, answer)."""
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


def _blob(vector: np.ndarray | None, dtype: type = np.float32) -> bytes | None:
    if vector is None:
        return None
    return np.ascontiguousarray(vector, dtype=dtype).tobytes()


def _vector(blob: Any, dtype: type = np.float32) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(bytes(blob), dtype=dtype)


def _op(row: Sequence[Any]) -> LogOp:
    seq, op, entry_id, scope, model, text, response, vector, created_at = row[:9]
    context, context_vector, answer_vector, payload = row[9:]
    if op == "delete":
        return LogOp(int(seq), "delete", deleted=int(entry_id))
    if op == "answer":
        answered = _vector(answer_vector, np.float16)
        assert answered is not None  # written with one
        return LogOp(int(seq), "answer", answered=(int(entry_id), answered))
    if op == "traffic":
        batches = tuple(
            TrafficBatch(
                str(b["model"]),
                str(b["kind"]),
                int(b["lookups"]),
                tuple(b["risks"]),
                float(b["served"]),
            )
            for b in json.loads(payload)
        )
        return LogOp(int(seq), "traffic", traffic=batches, created_at=float(created_at))
    if op == "observe":
        data = json.loads(payload)
        observed = LoggedObservation(
            entry_id=int(entry_id),
            pair=str(data["pair"]),
            similarity=float(data["s"]),
            equivalent=bool(data["ok"]),
            kind=str(data.get("kind", "observed")),
            created_at=float(created_at),
            other=None if data.get("other") is None else int(data["other"]),
            tokens=int(data.get("tokens") or 0),
            weight=float(data.get("w", 1.0)),
            margin=None if data.get("m") is None else float(data["m"]),
        )
        return LogOp(int(seq), "observe", observed=observed)
    entry = LoggedEntry(
        entry_id=int(seq),
        scope=str(scope),
        model=str(model),
        text=str(text),
        response=str(response),
        vector=_vector(vector),
        created_at=float(created_at),
        context=str(context or ""),
        context_vector=_vector(context_vector),
    )
    return LogOp(int(seq), "insert", entry=entry)
