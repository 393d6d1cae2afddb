"""What only PostgreSQL needs: the server fixture, and surviving a lost connection.

The store, verify, query, retention, writer-load and multi-process tests run on PostgreSQL as
well as SQLite through the `db_url` fixture (conftest.py); this file holds the rest.
"""

from __future__ import annotations

import argparse

import psycopg
import pytest

from gateway.audit import AuditStore, AuditWriter, verify
from gateway.audit.cli import add_audit_commands
from tests.servers.postgres import PostgresServer
from tests.unit.audit.factory import make_record, make_records


def _drop_other_connections(url: str) -> None:
    """Terminate every other session on the database, as a server restart or failover would."""
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_each_test_gets_its_own_empty_database(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    assert postgres_url.startswith(f"postgresql://raygate@127.0.0.1:{postgres_server.port}/")
    with psycopg.connect(postgres_url) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        assert tables.fetchone() == (0,)


def test_a_store_reconnects_after_its_connection_is_dropped(postgres_url: str) -> None:
    store = AuditStore.open(postgres_url)
    store.append(make_records(2))
    _drop_other_connections(postgres_url)
    with pytest.raises(psycopg.OperationalError):
        store.count()  # the call that finds the connection dead fails...
    assert store.count() == 2  # ...and the next one opens a new connection
    store.db.close()


@pytest.mark.asyncio
async def test_the_writer_rides_out_a_dropped_connection(postgres_url: str) -> None:
    store = AuditStore.open(postgres_url)
    writer = AuditWriter(store, flush_interval_s=0, retry_delay_s=0.001)
    for n in range(5):
        await writer.record(make_record(n))
    await writer.flush()
    _drop_other_connections(postgres_url)
    for n in range(5, 10):
        await writer.record(make_record(n))
    await writer.aclose()
    store.db.close()  # this thread's connection was dropped too; the writer had its own
    assert store.count() == 10
    assert verify(store).ok


def test_the_cli_verifies_a_postgresql_trail(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = AuditStore.open(postgres_url)
    store.append(make_records(3))
    store.db.execute("UPDATE audit_records SET tokens_in = 1 WHERE seq = 2")
    parser = argparse.ArgumentParser()
    add_audit_commands(parser.add_subparsers(required=True))
    args = parser.parse_args(["audit", "verify", "--db", postgres_url])
    assert args.run(args) == 1
    assert "seq 2" in capsys.readouterr().err
