"""The data layer's dialect handling, on SQLite (PostgreSQL runs in the audit tests)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gateway.storage.database import Database, _to_pyformat


def test_placeholders_become_pyformat_outside_quoted_strings() -> None:
    sql = "SELECT * FROM t WHERE a = ? AND b LIKE 'x%?' AND c LIKE ?"
    assert _to_pyformat(sql) == "SELECT * FROM t WHERE a = %s AND b LIKE 'x%%?' AND c LIKE %s"


def test_a_relative_sqlite_url_is_a_file_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    db = Database("sqlite:///state/raygate.db")
    db.migrate(["CREATE TABLE IF NOT EXISTS t (x TEXT)"])
    db.execute("INSERT INTO t VALUES (?)", ("hello",))
    assert (tmp_path / "state" / "raygate.db").exists()
    assert Database(f"sqlite:///{tmp_path}/state/raygate.db").fetchall("SELECT x FROM t") == [
        ("hello",)
    ]


def test_a_failed_transaction_leaves_nothing_behind() -> None:
    db = Database("sqlite://:memory:")
    db.migrate(["CREATE TABLE t (x INTEGER PRIMARY KEY)"])
    with pytest.raises(RuntimeError), db.transaction() as cur:
        cur.execute("INSERT INTO t VALUES (?)", (1,))
        raise RuntimeError("abort")
    assert db.fetchall("SELECT x FROM t") == []


def test_threads_share_one_file_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/shared.db")
    db.migrate(["CREATE TABLE t (x INTEGER)"])

    def write(start: int) -> None:
        db.executemany("INSERT INTO t VALUES (?)", [(start + i,) for i in range(50)])

    threads = [threading.Thread(target=write, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert db.fetchone("SELECT COUNT(*) FROM t") == (200,)


def test_an_unknown_url_scheme_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="mysql://"):
        Database("mysql://localhost/db")


def test_many_connections_opening_a_new_file_together_all_get_wal(tmp_path: Path) -> None:
    """The replicas of a first start open the same new SQLite file at once, and write to it:
    none may fail (a WAL switch racing a write is refused at once, without the busy
    timeout; a race, so ten new files, each opened by eight threads)."""
    for attempt in range(10):
        path = tmp_path / f"new-{attempt}.db"
        start = threading.Barrier(8)
        modes: list[str] = []
        errors: list[BaseException] = []

        def open_and_write(table: str) -> None:
            db = Database(f"sqlite:///{path}")  # noqa: B023 - joined before the next file
            start.wait()  # noqa: B023
            try:
                db.migrate([f"CREATE TABLE IF NOT EXISTS {table} (x TEXT)"])
                for _ in range(10):
                    db.execute(f"INSERT INTO {table} VALUES (?)", ("x",))
                row = db.fetchone("PRAGMA journal_mode")
                modes.append(str(row[0]) if row else "")  # noqa: B023
            except BaseException as exc:  # collected: the assertion below names it
                errors.append(exc)  # noqa: B023
            finally:
                db.close()

        threads = [threading.Thread(target=open_and_write, args=(f"t{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert modes == ["wal"] * 8
