"""The audit trail on a `Database`: append to the chain, read it back, cut its old end.

Appends from any number of processes (Serve replicas on one SQLite file, pods on one
PostgreSQL) keep one chain: each batch runs inside `transaction(exclusive=True)`, reads the
head there, links its records after it and moves the head, all in one commit.

Two keys from outside the database change what is stored, never what is hashed:
- the chain keys (`audit.chain_key`): each record is linked with HMAC under the current key
  and names it in `chain_key`; the anchor carries a MAC when retention moves it;
- the data keys (`storage.data_key`): `prompt` and `response` are sealed (AES-GCM) in the row,
  `content_key` names the key; the chain hashes the clear text, so rows reseal freely.
Every replica that writes the trail must hold the same keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from gateway.audit import schema
from gateway.audit.chain import (
    CHAIN_PURPOSE,
    ChainKey,
    anchor_message,
    point_mac,
    seal_json,
)
from gateway.audit.record import AuditRecord
from gateway.storage import Database
from gateway.storage.keyring import Keyring
from gateway.storage.sealing import Sealer, SealError, is_sealed, sealed_key_id

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

ANCHOR_DOMAIN = "raygate-audit-anchor"


class ChainPoint(BaseModel):
    """A position in the chain: a seq and the hash of the record there."""

    seq: int
    hash: str


class ChainState(BaseModel):
    """Where the stored chain starts (`anchor`, after retention) and ends (`head`)."""

    anchor: ChainPoint
    head: ChainPoint
    anchor_mac: str | None = None  # `key_id:hex` over the anchor; set by a keyed prune


class ChainChanged(RuntimeError):
    """The chain moved under an operation that needed it still (e.g. a concurrent prune)."""


def _add_missing_columns(db: Database) -> None:
    """Bring tables created by an earlier release up to `schema.ADDED_COLUMNS`."""
    for table in dict.fromkeys(table for table, _, _ in schema.ADDED_COLUMNS):
        added = [(column, kind) for t, column, kind in schema.ADDED_COLUMNS if t == table]
        db.add_missing_columns(table, added)
    db.migrate(schema.AFTER_ADDED_COLUMNS)


def content_context(record_id: str, column: str) -> str:
    """What a sealed prompt or response is bound to: its record and its column."""
    return f"audit:{record_id}:{column}"


_CONTENT_INDEXES = tuple(schema.COLUMNS.index(c) for c in schema.CONTENT_COLUMNS)
_ID_INDEX = schema.COLUMNS.index("id")


class AuditStore:
    """The audit tables of one database; safe to share between threads."""

    def __init__(
        self,
        db: Database,
        *,
        migrate: bool = True,
        chain_keys: Keyring | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self.db = db
        self._chain_keys = chain_keys.derive(CHAIN_PURPOSE) if chain_keys is not None else None
        self.sealer = sealer
        if migrate:
            db.migrate(schema.DDL)
            _add_missing_columns(db)

    @classmethod
    def open(
        cls, url: str, *, chain_keys: Keyring | None = None, sealer: Sealer | None = None
    ) -> AuditStore:
        """The store in the database at `url`, its tables created if missing."""
        return cls(Database(url), chain_keys=chain_keys, sealer=sealer)

    @classmethod
    def for_gateway(cls, db: Database, config: GatewayConfig) -> AuditStore:
        """The store with the chain keys (`audit.chain_key`) and data keys
        (`storage.data_key`) of `config`: what every writer and reader of the trail uses."""
        return cls(
            db,
            chain_keys=config.audit.chain_keyring(),
            sealer=Sealer.from_keyring(config.storage.data_keyring()),
        )

    @property
    def keyed(self) -> bool:
        """Whether this store holds chain keys (links new records with HMAC, and checks that
        the chain is keyed when it verifies)."""
        return self._chain_keys is not None

    def chain_key(self, key_id: str) -> bytes | None:
        """The chain key named `key_id`, or None when this store does not hold it."""
        return self._chain_keys.get(key_id) if self._chain_keys is not None else None

    def current_chain_key(self) -> ChainKey | None:
        """The key new records and anchors are sealed with; None on an unkeyed store."""
        return self._chain_keys.current() if self._chain_keys is not None else None

    @property
    def chain_key_ids(self) -> tuple[str, ...]:
        """The ids of the chain keys held, the current one first."""
        return self._chain_keys.ids if self._chain_keys is not None else ()

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
            key = self.current_chain_key()
            sealed: list[AuditRecord] = []
            rows: list[tuple[Any, ...]] = []
            index: dict[str, list[tuple[int, str]]] = {t: [] for t, _ in schema.INDEX_TABLES}
            for record in records:
                seq += 1
                # One JSON form serves the hash and the row: this loop is the writer's CPU.
                body = seal_json(record.model_dump(mode="json"), seq, prev_hash, key)
                rows.append(self._stored(schema.row_from_json(body)))
                chained = ("seq", "prev_hash", "hash", "chain_key")
                sealed.append(record.model_copy(update={k: body[k] for k in chained}))
                prev_hash = body["hash"]
                for table, values in schema.index_values(record).items():
                    index[table].extend((seq, v) for v in values)
            cur.executemany(schema.INSERT_STORED, rows)
            for table, column in schema.INDEX_TABLES:
                if index[table]:
                    sql = f"INSERT INTO {table} (seq, {column}) VALUES (?, ?)"
                    cur.executemany(sql, index[table])
            cur.execute(
                "UPDATE audit_chain SET seq = ?, hash = ? WHERE name = 'head'", (seq, prev_hash)
            )
        return sealed

    def _stored(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        """A record's row as stored: content sealed when there is a data key, and its key id."""
        if self.sealer is None or all(row[i] is None for i in _CONTENT_INDEXES):
            return (*row, None)
        stored = list(row)
        for column, i in zip(schema.CONTENT_COLUMNS, _CONTENT_INDEXES, strict=True):
            if row[i] is not None:
                stored[i] = self.sealer.seal(
                    row[i], context=content_context(row[_ID_INDEX], column)
                )
        return (*stored, self.sealer.current_key_id)

    def open_row(self, stored: tuple[Any, ...]) -> tuple[Any, ...]:
        """The record's columns of a stored row (`schema.SELECT_STORED`), content opened.

        Raises SealError when sealed content does not open (no such data key, or altered).
        """
        *row, content_key = stored
        if content_key is None:
            return tuple(row)
        if self.sealer is None:
            raise SealError(
                f"record {row[_ID_INDEX]}: its prompt and response are sealed under data key "
                f"{content_key!r}; set storage.data_key (RAYGATE_DATA_KEY) to read them"
            )
        for column, i in zip(schema.CONTENT_COLUMNS, _CONTENT_INDEXES, strict=True):
            value = row[i]
            if value is None:
                continue
            if not is_sealed(value) or sealed_key_id(value) != content_key:
                raise SealError(f"record {row[_ID_INDEX]}: {column} is not sealed as its row says")
            row[i] = self.sealer.open(value, context=content_context(row[_ID_INDEX], column))
        return tuple(row)

    def record(self, stored: tuple[Any, ...]) -> AuditRecord:
        """The record a stored row holds (content opened)."""
        return schema.from_row(self.open_row(stored))

    def chain_state(self) -> ChainState:
        """The anchor and the head, read together."""
        # One statement, so one snapshot on PostgreSQL's READ COMMITTED too.
        rows = self.db.fetchall("SELECT name, seq, hash, mac FROM audit_chain")
        points = {name: ChainPoint(seq=seq, hash=hash_) for name, seq, hash_, _ in rows}
        macs = {name: mac for name, _, _, mac in rows}
        return ChainState(anchor=points["anchor"], head=points["head"], anchor_mac=macs["anchor"])

    def rows(self, *, after_seq: int, through_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """The records' rows (`schema.COLUMNS`, content opened) with
        `after_seq < seq <= through_seq`, in seq order."""
        stored = self.stored_rows(after_seq=after_seq, through_seq=through_seq, limit=limit)
        return [self.open_row(row) for row in stored]

    def stored_rows(self, *, after_seq: int, through_seq: int, limit: int) -> list[tuple[Any, ...]]:
        """Rows as stored (`schema.SELECT_STORED`: content possibly sealed, then
        `content_key`) with `after_seq < seq <= through_seq`, in seq order (for verify)."""
        return self.db.fetchall(
            f"SELECT {schema.SELECT_STORED} FROM audit_records r "
            "WHERE r.seq > ? AND r.seq <= ? ORDER BY r.seq LIMIT ?",
            (after_seq, through_seq, limit),
        )

    def hash_at(self, seq: int) -> str | None:
        """The stored hash of the record at `seq`, or None when there is none."""
        row = self.db.fetchone("SELECT hash FROM audit_records WHERE seq = ?", (seq,))
        return str(row[0]) if row else None

    def anchor_mac(self, anchor: ChainPoint) -> str | None:
        """The MAC a keyed store gives `anchor` (None on an unkeyed store)."""
        key = self.current_chain_key()
        if key is None:
            return None
        return point_mac(key, ANCHOR_DOMAIN, anchor_message(anchor.seq, anchor.hash))

    def authenticate_anchor(self, anchor: ChainPoint) -> None:
        """Store the current key's MAC for `anchor`, if it is still the anchor (adoption of a
        chain pruned before it was keyed); ChainChanged otherwise."""
        with self.db.transaction(exclusive=True) as cur:
            cur.execute("SELECT seq, hash FROM audit_chain WHERE name = 'anchor'")
            if tuple(cur.fetchone()) != (anchor.seq, anchor.hash):
                raise ChainChanged("the anchor moved since the chain was verified")
            cur.execute(
                "UPDATE audit_chain SET mac = ? WHERE name = 'anchor'", (self.anchor_mac(anchor),)
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
            mac = self.anchor_mac(ChainPoint(seq=seq, hash=hash_at_seq))
            cur.execute(
                "UPDATE audit_chain SET seq = ?, hash = ?, mac = ? WHERE name = 'anchor'",
                (seq, hash_at_seq, mac),
            )
        return deleted

    def rows_to_reseal(self, after_seq: int, limit: int) -> list[tuple[int, str, Any, Any, Any]]:
        """(seq, id, prompt, response, content_key) of rows whose content is in clear or
        sealed under a key other than the current data key, after `after_seq`."""
        if self.sealer is None:
            raise SealError("no data key: set storage.data_key (RAYGATE_DATA_KEY) to seal")
        return [
            (int(row[0]), str(row[1]), row[2], row[3], row[4])
            for row in self.db.fetchall(
                "SELECT seq, id, prompt, response, content_key FROM audit_records "
                "WHERE seq > ? AND (prompt IS NOT NULL OR response IS NOT NULL) "
                "AND (content_key IS NULL OR content_key <> ?) ORDER BY seq LIMIT ?",
                (after_seq, self.sealer.current_key_id, limit),
            )
        ]

    def replace_content(
        self, seq: int, old_key: str | None, prompt: str | None, response: str | None
    ) -> bool:
        """Store resealed content for `seq` if its content key is still `old_key`."""
        assert self.sealer is not None
        with self.db.transaction() as cur:
            cur.execute(
                "UPDATE audit_records SET prompt = ?, response = ?, content_key = ? "
                "WHERE seq = ? AND "
                + ("content_key IS NULL" if old_key is None else "content_key = ?"),
                (prompt, response, self.sealer.current_key_id, seq)
                + (() if old_key is None else (old_key,)),
            )
            return bool(cur.rowcount == 1)


def _unstored(cur: Any, records: Sequence[AuditRecord]) -> list[AuditRecord]:
    ids = [r.id for r in records]
    cur.execute(
        f"SELECT id FROM audit_records WHERE id IN ({', '.join('?' * len(ids))})", tuple(ids)
    )
    stored = {row[0] for row in cur.fetchall()}
    return [r for r in records if r.id not in stored]
