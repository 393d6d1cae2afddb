"""One small data layer over SQLite (embedded default) and PostgreSQL (cluster).

Callers write one SQL dialect: `?` placeholders, portable types (TEXT, BIGINT, DOUBLE
PRECISION), `INSERT ... ON CONFLICT`. The PostgreSQL side translates the placeholders. The API
is synchronous (sqlite3 and psycopg are); async callers run it with `asyncio.to_thread`.
A `Database` is safe to share between threads: each thread gets its own connection.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Literal, Protocol

Params = Sequence[Any]


class Cursor(Protocol):
    def execute(self, sql: str, params: Params = ...) -> Any: ...
    def executemany(self, sql: str, rows: Sequence[Params]) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    @property
    def rowcount(self) -> int: ...


class Database:
    """A database named by URL: `sqlite:///relative.db`, `sqlite:////abs/path.db`,
    `sqlite://:memory:`, or `postgresql://user@host:port/dbname`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.dialect: Literal["sqlite", "postgresql"]
        self._path = ""
        if url in ("sqlite://", "sqlite://:memory:", "sqlite:///:memory:"):
            self.dialect, self._path = "sqlite", ":memory:"
        elif url.startswith("sqlite:///"):
            # sqlite:///relative.db, sqlite:////absolute/path.db (as SQLAlchemy reads them)
            self.dialect, self._path = "sqlite", url.removeprefix("sqlite:///")
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
        else:
            raise ValueError(f"database URL {url!r}: expected sqlite:///... or postgresql://...")
        self._local = threading.local()
        self._shared_memory: sqlite3.Connection | None = None
        self._memory_lock = threading.Lock()

    def _connect(self) -> Any:
        conn = getattr(self._local, "conn", None)
        # A PostgreSQL connection that lost its server stays closed: open a new one, or every
        # later call on this thread would fail although the server is back.
        if conn is not None and not getattr(conn, "closed", False):
            return conn
        if self.dialect == "sqlite":
            conn = self._sqlite()
        else:
            import psycopg

            conn = psycopg.connect(self.url, autocommit=True)
        self._local.conn = conn
        return conn

    def _sqlite(self) -> sqlite3.Connection:
        if self._path == ":memory:":
            # One in-memory database per Database object, shared (serialised) by all threads.
            with self._memory_lock:
                if self._shared_memory is None:
                    self._shared_memory = sqlite3.connect(
                        ":memory:", check_same_thread=False, isolation_level=None
                    )
            return self._shared_memory
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        _switch_to_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _sql(self, sql: str) -> str:
        return _to_pyformat(sql) if self.dialect == "postgresql" else sql

    @contextmanager
    def transaction(self, *, exclusive: bool = False) -> Iterator[Cursor]:
        """A cursor inside one transaction; committed on success, rolled back on error.

        `exclusive` serialises writers across processes: SQLite's BEGIN IMMEDIATE; on
        PostgreSQL a transaction-scoped advisory lock (callers that need a row lock take it).
        """
        conn = self._connect()
        with self._memory_lock if self._path_is_memory() else nullcontext():
            if self.dialect == "sqlite":
                conn.execute("BEGIN IMMEDIATE" if exclusive else "BEGIN")
                try:
                    yield _Translating(conn.cursor(), self._sql)
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite may already have rolled back (e.g. disk full), and a failed COMMIT
                    # leaves the transaction open: either way the connection ends outside one.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            else:
                with conn.transaction(), conn.cursor() as cur:
                    if exclusive:
                        cur.execute("SELECT pg_advisory_xact_lock(727274)")
                    yield _Translating(cur, self._sql)

    def _path_is_memory(self) -> bool:
        return self.dialect == "sqlite" and self._path == ":memory:"

    def execute(self, sql: str, params: Params = ()) -> None:
        with self.transaction() as cur:
            cur.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        with self.transaction() as cur:
            for row in rows:
                cur.execute(sql, row)

    def fetchall(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        with self.transaction() as cur:
            cur.execute(sql, params)
            return [tuple(row) for row in cur.fetchall()]

    def fetchone(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        with self.transaction() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
        return tuple(row) if row is not None else None

    def migrate(self, statements: Sequence[str]) -> None:
        """Run idempotent DDL (`CREATE TABLE IF NOT EXISTS ...`), one statement per item."""
        with self.transaction(exclusive=True) as cur:
            for statement in statements:
                cur.execute(statement)

    def add_missing_columns(self, table: str, columns: Sequence[tuple[str, str]]) -> list[str]:
        """Add each `(column, SQL type)` that `table` (created by an earlier release) lacks;
        returns the columns added.

        New columns must be nullable or have a default; existing rows get NULL / the default.
        """
        with self.transaction(exclusive=True) as cur:
            if self.dialect == "postgresql":
                cur.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = ?",
                    (table,),
                )
            else:
                cur.execute(f"PRAGMA table_info({table})")
            rows = cur.fetchall()
            present = {row[0] if self.dialect == "postgresql" else row[1] for row in rows}
            added = [(column, kind) for column, kind in columns if column not in present]
            exists = " IF NOT EXISTS" if self.dialect == "postgresql" else ""
            for column, kind in added:
                cur.execute(f"ALTER TABLE {table} ADD COLUMN{exists} {column} {kind}")
        return [column for column, _ in added]

    def reclaim(self, tables: Sequence[str]) -> None:
        """Rewrite `tables` so that old versions of changed rows leave the files on disk
        (after content was resealed: the clear text must not linger in free pages).

        SQLite: VACUUM, then the WAL checkpointed and truncated. PostgreSQL: VACUUM FULL of
        each table (it locks the table while it runs).
        """
        conn = self._connect()
        with self._memory_lock if self._path_is_memory() else nullcontext():
            if self.dialect == "sqlite":
                conn.execute("VACUUM")
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return
            for table in tables:
                conn.execute(f"VACUUM FULL {table}")

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and conn is not self._shared_memory:
            conn.close()
        self._local.conn = None


class _Translating:
    """A cursor whose SQL is written with `?` placeholders whatever the driver."""

    def __init__(self, cursor: Any, translate: Any) -> None:
        self._cursor = cursor
        self._translate = translate

    def execute(self, sql: str, params: Params = ()) -> Any:
        return self._cursor.execute(self._translate(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Params]) -> Any:
        # One driver call: psycopg pipelines the statements, sqlite3 reuses the prepared one.
        return self._cursor.executemany(self._translate(sql), [tuple(r) for r in rows])

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)


_PLACEHOLDER = re.compile(r"'(?:[^']|'')*'|\?|%")


def _to_pyformat(sql: str) -> str:
    """`?` -> `%s` and a literal `%` -> `%%`, leaving quoted strings alone."""

    def swap(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "?":
            return "%s"
        if token == "%":
            return "%%"
        return token.replace("%", "%%")

    return _PLACEHOLDER.sub(swap, sql)


def _switch_to_wal(conn: sqlite3.Connection, *, deadline_s: float = 30.0) -> None:
    """WAL mode, retried while another connection holds the lock: SQLite answers "database is
    locked" at once, without its busy handler, when several processes (the replicas of a
    first `raygate up`) switch a brand-new file together."""
    end = time.monotonic() + deadline_s
    delay = 0.01
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > end:
                raise
        time.sleep(delay)  # a backoff between attempts, not a synchronisation
        delay = min(delay * 2, 0.5)
