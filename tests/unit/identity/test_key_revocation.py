"""Revocation is immediate on every path: during a rotation's grace period, down a rotated
line of keys, across clocks, after the first release's schema, and through the authenticator."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from starlette.datastructures import Headers

from gateway.config import AuthConfig
from gateway.errors import AuthError, InvalidRequest
from gateway.identity.authenticator import Authenticator
from gateway.identity.keys import KeyStore
from gateway.identity.users import UserStore
from gateway.storage import Database

SECRET = "0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db() -> Database:
    return Database("sqlite://:memory:")


@pytest.fixture
def keys(db: Database, clock: Clock) -> KeyStore:
    return KeyStore(db, SECRET, clock=clock)


def refused(keys: KeyStore, secret: str) -> str | None:
    with pytest.raises(AuthError) as caught:
        keys.verify(secret)
    return caught.value.code


def test_revoking_a_key_in_its_grace_period_stops_it_at_once(keys: KeyStore) -> None:
    old = keys.issue("alice")
    new = keys.rotate(old.key.key_id, grace_s=86400)
    keys.verify(old.secret)  # the grace period: both work

    keys.revoke(old.key.key_id)

    assert refused(keys, old.secret) == "api_key_revoked"
    assert keys.get(old.key.key_id).state(0) == "revoked"
    keys.verify(new.secret)


def test_revoking_the_replacement_also_stops_the_key_it_replaced(keys: KeyStore) -> None:
    first = keys.issue("alice")
    second = keys.rotate(first.key.key_id, grace_s=86400)
    third = keys.rotate(second.key.key_id, grace_s=86400)

    keys.revoke(third.key.key_id)

    for issued in (first, second, third):
        assert refused(keys, issued.secret) == "api_key_revoked"


def test_a_rotated_key_cannot_be_rotated_again_to_stretch_its_grace(
    keys: KeyStore, clock: Clock
) -> None:
    old = keys.issue("alice")
    keys.rotate(old.key.key_id, grace_s=60)
    with pytest.raises(InvalidRequest, match="already replaced"):
        keys.rotate(old.key.key_id, grace_s=30 * 86400)
    clock.now += 61
    assert refused(keys, old.secret) == "api_key_revoked"
    assert keys.get(old.key.key_id).state(clock.now) == "rotated"


def test_a_revocation_holds_on_a_replica_whose_clock_is_behind(db: Database) -> None:
    admin_clock, replica_clock = Clock(2_000_000.0), Clock(2_000_000.0 - 300)
    issued = KeyStore(db, SECRET, clock=admin_clock).issue("alice")
    KeyStore(db, SECRET, clock=admin_clock).revoke(issued.key.key_id)

    replica = KeyStore(db, SECRET, clock=replica_clock)

    assert refused(replica, issued.secret) == "api_key_revoked"


def test_a_first_release_rotation_keeps_its_grace_and_can_be_revoked(
    db: Database, clock: Clock
) -> None:
    # The first release's table: no grace_until, the grace's end kept in revoked_at.
    db.execute(
        """CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '', hint TEXT NOT NULL, models_json TEXT,
            created_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION,
            revoked_at DOUBLE PRECISION, replaced_by TEXT)"""
    )
    keys = KeyStore(db, SECRET, clock=clock)
    old = keys.issue("alice")
    db.execute("ALTER TABLE api_keys DROP COLUMN grace_until")
    db.execute(
        "UPDATE api_keys SET revoked_at = ?, replaced_by = 'newer' WHERE key_id = ?",
        (clock.now + 3600, old.key.key_id),
    )

    keys = KeyStore(db, SECRET, clock=clock)  # opening migrates

    keys.verify(old.secret)  # still in its grace period
    assert keys.get(old.key.key_id).grace_until == clock.now + 3600
    keys.revoke(old.key.key_id)
    assert refused(keys, old.secret) == "api_key_revoked"


@pytest.mark.asyncio
async def test_the_authenticator_refuses_a_key_revoked_after_it_was_used(
    db: Database, keys: KeyStore
) -> None:
    authenticator = Authenticator(AuthConfig(), keys=keys, users=UserStore(db))
    old = keys.issue("alice")
    keys.rotate(old.key.key_id, grace_s=3600)
    headers = Headers({"authorization": f"Bearer {old.secret}"})
    assert (await authenticator.authenticate(headers, "127.0.0.1")).key_id == old.key.key_id

    keys.revoke(old.key.key_id)

    with pytest.raises(AuthError) as caught:
        await authenticator.authenticate(headers, "127.0.0.1")
    assert caught.value.code == "api_key_revoked"


def test_revoking_while_another_writer_commits_is_never_database_is_locked(
    tmp_path: Path,
) -> None:
    """A revocation reads the key's line of replacements, then writes: as one deferred SQLite
    transaction it failed ('database is locked') when another writer committed in between."""
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    keys = KeyStore(Database(url), SECRET)
    issued = [keys.issue("ann").key.key_id for _ in range(40)]
    stop = threading.Event()

    def writer() -> None:
        other = sqlite3.connect(tmp_path / "keys.db", timeout=30)
        other.execute("CREATE TABLE IF NOT EXISTS noise (n INTEGER)")
        while not stop.is_set():
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO noise VALUES (1)")
            other.commit()
        other.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for key_id in issued:
            keys.revoke(key_id)
    finally:
        stop.set()
        thread.join()
    assert all(keys.get(key_id).state(0) == "revoked" for key_id in issued)
