"""The audit trail on a `Database`: append to the chain, read it back, cut its old end.

Appends from any number of processes (Serve replicas on one SQLite file, pods on one
PostgreSQL) keep one chain: each batch runs inside `transaction(exclusive=True)`, reads the
head there, links its records after it and moves the head, all in one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from gateway.audit import schema
from gateway.audit.chain import seal_json
from gateway.audit.record import AuditRecord
from gateway.storage import Database


class ChainPoint(BaseModel):
    """A position in the chain: a seq and the hash of the record there."""

    seq: int
    hash: str


class ChainState(BaseModel):
    """Where the stored chain starts (`anchor`, after retention) and ends (`head`)."""

    anchor: ChainPoint
    head: ChainPoint


class ChainChanged(RuntimeError):
    """The chain moved under an operation that needed it still (e.g. a concurrent prune)."""


def _add_missing_columns(db: Database) -> None:
    """Bring tables created by an earlier release up to `schema.ADDED_COLUMNS`."""
    with db.transaction(exclusive=True) as cur:
        for table, column, kind in schema.ADDED_COLUMNS:
            if db.dialect == "postgresql":
                cur.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
                continue
            cur.execute(f"PRAGMA table_info({table})")
            if column not in {row[1] for row in cur.fetchall()}:
                cur.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


class AuditStore:
    """The audit tables of one database; safe to share between threads."""

    def __init__(self, db: Database, *, migrate: bool = True) -> None:
        self.db = db
        if migrate:
            db.migrate(schema.DDL)
            _add_missing_columns(db)

    @classmethod
    def open(cls, url: str) -> AuditStore:
        """The store in the database at `url`, its tables created if missing."""
        return cls(Database(url))

    def append(
        self, records: Sequence[AuditRecord], *, skip_existing: bool = False
    ) -> list[AuditRecord]:
        """Chain and commit `records` in order, in one transaction; returns them sealed.

        `skip_existing` leaves out records whose id is already stored: a batch retried after a
        commit whose acknowledgement was lost is not appended twice.
        """
        if not records:
            return []
        with self.db.transaction(exclusive=True) as cur:
            if skip_existing:
                records = _unstored(cur, records)
            cur.execute("SELECT seq, hash FROM audit_chain WHERE name = 'head'")
            seq, prev_hash = cur.fetchone()
            sealed: list[AuditRecord] = []
            rows: list[tuple[Any, ...]] = []
            index: dict[str, list[tuple[int, str]]] = {t: [] for t, _ in schema.INDEX_TABLES}
            for record in records:
                seq += 1
                # One JSON form serves the hash and the row: this loop is the writer's CPU.
                body = seal_json(record.model_dump(mode="json"), seq, prev_hash)
                rows.append(schema.row_from_json(body))
                sealed.append(
                    record.model_copy(update={k: body[k] for k in ("seq", "prev_hash", "hash")})
                )
                prev_hash = body["hash"]
                for table, values in schema.index_values(record).items():
                    index[table].extend((seq, v) for v in values)
            cur.executemany(schema.INSERT_RECORD, rows)
            for table, column in schema.INDEX_TABLES:
                if index[table]:
                    sql = f"INSERT INTO {table} (seq, {column}) VALUES (?, ?)"
                    cur.executemany(sql, index[table])
            cur.execute(
                "UPDATE audit_chain SET seq = ?, hash = ? WHERE name = 'head'", (seq, prev_hash)
            )
        return sealed

    def chain_state(self) -> ChainState:
        """The anchor and the head, read together."""
        # One statement, so one snapshot on PostgreSQL's READ COMMITTED too.
        rows = self.db.fetchall("SELECT name, seq, hash FROM audit_chain")
        points = {name: ChainPoint(seq=seq, hash=hash_) for name, seq, hash_ in rows}
        return ChainState(anchor=points["anchor"], head=points["head"])

    def rows(self, *, after_seq: int, through_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Raw rows with `after_seq < seq <= through_seq`, in seq order (for verification)."""
        return self.db.fetchall(
            f"SELECT {schema.SELECT_COLUMNS} FROM audit_records r "
            "WHERE r.seq > ? AND r.seq <= ? ORDER BY r.seq LIMIT ?",
            (after_seq, through_seq, limit),
        )

    def index_entries(self, first_seq: int, last_seq: int) -> dict[int, dict[str, set[str]]]:
        """What the side tables hold for each seq in `[first_seq, last_seq]`."""
        found: dict[int, dict[str, set[str]]] = {}
        for table, column in schema.INDEX_TABLES:
            for seq, value in self.db.fetchall(
                f"SELECT seq, {column} FROM {table} WHERE seq >= ? AND seq <= ?",
                (first_seq, last_seq),
            ):
                found.setdefault(seq, {}).setdefault(table, set()).add(value)
        return found

    def first_beyond_head(self) -> tuple[int, str] | None:
        """The (seq, id) of a record past the head; an honest chain has none."""
        return self._one_record(
            "SELECT seq, id FROM audit_records "
            "WHERE seq > (SELECT seq FROM audit_chain WHERE name = 'head') ORDER BY seq LIMIT 1"
        )

    def first_at_or_before_anchor(self) -> tuple[int, str] | None:
        """The (seq, id) of a record at or before the anchor; an honest chain has none."""
        return self._one_record(
            "SELECT seq, id FROM audit_records "
            "WHERE seq <= (SELECT seq FROM audit_chain WHERE name = 'anchor') "
            "ORDER BY seq LIMIT 1"
        )

    def _one_record(self, sql: str) -> tuple[int, str] | None:
        row = self.db.fetchone(sql)
        return (int(row[0]), str(row[1])) if row else None

    def count(self) -> int:
        """How many records are stored."""
        row = self.db.fetchone("SELECT COUNT(*) FROM audit_records")
        return int(row[0]) if row else 0

    def last_seq_before(self, cutoff_ts: str) -> int:
        """The end of the longest chain prefix whose records are all older than `cutoff_ts`.

        Records from several writers are not appended in time order, so retention cuts the
        chain where the first record at or after the cutoff sits, never through the middle.
        """
        row = self.db.fetchone(
            "SELECT "
            "(SELECT MIN(seq) FROM audit_records WHERE ts >= ?), "
            "(SELECT seq FROM audit_chain WHERE name = 'head')",
            (cutoff_ts,),
        )
        assert row is not None
        first_kept, head = row
        return int(head) if first_kept is None else int(first_kept) - 1

    def cut_through(self, seq: int, *, anchor: ChainPoint, hash_at_seq: str) -> int:
        """Delete records up to `seq` and move the anchor there, in one transaction.

        `anchor` and `hash_at_seq` are what the caller verified; if either changed since, the
        chain moved under it and nothing is deleted (`ChainChanged`). Returns how many records
        were deleted.
        """
        with self.db.transaction(exclusive=True) as cur:
            cur.execute("SELECT seq, hash FROM audit_chain WHERE name = 'anchor'")
            current = ChainPoint(**dict(zip(("seq", "hash"), cur.fetchone(), strict=True)))
            cur.execute("SELECT hash FROM audit_records WHERE seq = ?", (seq,))
            at_seq = cur.fetchone()
            if current != anchor or at_seq is None or at_seq[0] != hash_at_seq:
                raise ChainChanged("the chain changed since it was verified; nothing was pruned")
            cur.execute("DELETE FROM audit_records WHERE seq <= ?", (seq,))
            deleted = int(cur.rowcount)
            for table, _ in schema.INDEX_TABLES:
                cur.execute(f"DELETE FROM {table} WHERE seq <= ?", (seq,))
            cur.execute(
                "UPDATE audit_chain SET seq = ?, hash = ? WHERE name = 'anchor'",
                (seq, hash_at_seq),
            )
        return deleted


def _unstored(cur: Any, records: Sequence[AuditRecord]) -> list[AuditRecord]:
    ids = [r.id for r in records]
    cur.execute(
        f"SELECT id FROM audit_records WHERE id IN ({', '.join('?' * len(ids))})", tuple(ids)
    )
    stored = {row[0] for row in cur.fetchall()}
    return [r for r in records if r.id not in stored]
