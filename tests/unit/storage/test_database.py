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
