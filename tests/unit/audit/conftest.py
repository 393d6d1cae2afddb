"""Fixtures for the audit tests: one `backend` fixture over SQLite and a real PostgreSQL, so
the store, verify, query and retention tests run unchanged on both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.audit import AuditStore


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database on each backend: a SQLite file, a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[AuditStore]:
    """An audit store with its tables created."""
    audit = AuditStore.open(db_url)
    yield audit
    audit.db.close()
