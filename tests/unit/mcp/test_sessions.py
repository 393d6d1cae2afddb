"""MCP client session ids, on SQLite and PostgreSQL: valid on any replica for their caller and
virtual server only, refused when altered, made up, expired or ended (on every replica)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ServiceUnavailable
from gateway.mcp.sessions import McpSessions
from gateway.storage import Database

KEY = "k" * 40


class Clock:
    """Wall time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def replicas(
    url: str, clock: Clock, *, ttl_s: float = 600, key: str | None = None
) -> list[McpSessions]:
    """Two replicas' session registers over one database, as two ingress replicas have."""
    return [McpSessions(Database(url), ttl_s=ttl_s, key=key, clock=clock) for _ in range(2)]


@pytest.mark.asyncio
@pytest.mark.parametrize("key", [None, KEY], ids=["key-in-database", "configured-key"])
async def test_a_session_is_valid_on_every_replica_for_its_caller_only(
    database_url: str, key: str | None
) -> None:
    one, other = replicas(database_url, Clock(), key=key)
    session = await one.issue("rita", "tools")
    assert session.id.isascii() and " " not in session.id
    for replica in (one, other):
        checked = await replica.check(session.id, "rita", "tools")
        assert checked is not None and checked.user_id == "rita"
    assert await other.check(session.id, "mallory", "tools") is None  # another caller
    assert await other.check(session.id, "rita", "admin-tools") is None  # another server
    assert (await one.issue("rita", "tools")).id != session.id


@pytest.mark.asyncio
async def test_a_forged_or_altered_id_is_refused(database_url: str) -> None:
    (sessions, _) = replicas(database_url, Clock())
    session = await sessions.issue("rita", "tools")
    issued, nonce, mac = session.id.split(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for forged in (
        f"{issued}.{nonce}.{flipped}",
        f"{int(issued, 16) + 1:x}.{nonce}.{mac}",  # a later issue time, same MAC
        f"{issued}.AAAAAAAAAAAAAAAA.{mac}",
        "not-a-session",
        "zz.yy.xx",
        "",
    ):
        assert await sessions.check(forged, "rita", "tools") is None, forged
    # Another gateway's secret makes ids this one does not accept.
    foreign = McpSessions(Database(database_url), ttl_s=600, key=KEY, clock=Clock())
    assert await sessions.check((await foreign.issue("rita", "tools")).id, "rita", "tools") is None


@pytest.mark.asyncio
async def test_a_session_expires_after_its_ttl(database_url: str) -> None:
    clock = Clock()
    sessions, _ = replicas(database_url, clock, ttl_s=60)
    session = await sessions.issue("rita", "tools")
    clock.now += 59
    assert await sessions.check(session.id, "rita", "tools") is not None
    clock.now += 1
    assert await sessions.check(session.id, "rita", "tools") is None


@pytest.mark.asyncio
async def test_an_ended_session_stays_ended_on_every_replica(database_url: str) -> None:
    clock = Clock()
    one, other = replicas(database_url, clock, ttl_s=60)
    ended = await one.issue("rita", "tools")
    kept = await one.issue("rita", "tools")
    await other.end(ended)
    assert await one.check(ended.id, "rita", "tools") is None
    assert await other.check(ended.id, "rita", "tools") is None
    assert await one.check(kept.id, "rita", "tools") is not None
    # The record of an ended session is dropped once the id would have expired anyway.
    clock.now += 61
    await one.end(await one.issue("otto", "tools"))
    rows = Database(database_url).fetchall("SELECT session_hash FROM mcp_sessions_ended")
    assert len(rows) == 1


@pytest.mark.asyncio
async def test_a_database_failure_is_a_503_never_an_unchecked_id(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()  # a directory where the database file should be
    broken = Database(f"sqlite:///{tmp_path / 'db'}")
    with pytest.raises(ServiceUnavailable):  # the signing key is kept there
        await McpSessions(broken, ttl_s=60).issue("rita", "tools")
    sessions = McpSessions(broken, ttl_s=60, key=KEY)
    working = McpSessions(Database(f"sqlite:///{tmp_path / 'ok.db'}"), ttl_s=60, key=KEY)
    session = await working.issue("rita", "tools")
    with pytest.raises(ServiceUnavailable):  # a valid MAC, but whether it ended is unknown
        await sessions.check(session.id, "rita", "tools")
