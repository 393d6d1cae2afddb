"""Issued API keys and local users on the real data layer (SQLite in memory)."""

from __future__ import annotations

import pytest

from gateway.errors import AuthError, InvalidRequest, NotFound
from gateway.identity.keys import KeyStore, looks_like_issued_key
from gateway.identity.principal import Principal
from gateway.identity.users import UserStore
from gateway.storage import Database

SECRET = "0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

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


def test_an_issued_key_verifies_and_names_its_owner(keys: KeyStore) -> None:
    issued = keys.issue("alice", name="laptop", models=["sim-*"])
    assert looks_like_issued_key(issued.secret) and len(issued.secret) > 50
    key = keys.verify(issued.secret)
    assert (key.user_id, key.name, key.models) == ("alice", "laptop", ("sim-*",))


def test_only_a_keyed_hash_is_stored(keys: KeyStore, db: Database) -> None:
    issued = keys.issue("alice")
    rows = db.fetchall("SELECT * FROM api_keys")
    assert all(issued.secret not in str(value) for row in rows for value in row)
    other = KeyStore(db, "another-secret-of-enough-length")
    with pytest.raises(AuthError):
        other.verify(issued.secret)


def test_a_near_miss_secret_is_refused(keys: KeyStore) -> None:
    secret = keys.issue("alice").secret
    with pytest.raises(AuthError) as caught:
        keys.verify(secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    assert caught.value.code == "invalid_api_key"


def test_revoked_and_expired_keys_are_refused_with_their_reason(
    keys: KeyStore, clock: Clock
) -> None:
    revoked = keys.issue("alice")
    keys.revoke(revoked.key.key_id)
    with pytest.raises(AuthError) as caught:
        keys.verify(revoked.secret)
    assert caught.value.code == "api_key_revoked"

    expiring = keys.issue("bob", expires_at=clock.now + 60)
    keys.verify(expiring.secret)
    clock.now += 61
    with pytest.raises(AuthError) as caught:
        keys.verify(expiring.secret)
    assert caught.value.code == "api_key_expired"


def test_rotation_keeps_the_old_key_working_for_the_grace_period(
    keys: KeyStore, clock: Clock
) -> None:
    old = keys.issue("alice", name="ci", models=["sim-small"])
    new = keys.rotate(old.key.key_id, grace_s=300)
    assert (new.key.user_id, new.key.name, new.key.models) == ("alice", "ci", ("sim-small",))
    keys.verify(old.secret)
    keys.verify(new.secret)
    assert keys.get(old.key.key_id).state(clock.now) == "rotating"
    clock.now += 301
    with pytest.raises(AuthError):
        keys.verify(old.secret)
    keys.verify(new.secret)
    assert keys.get(old.key.key_id).replaced_by == new.key.key_id
    assert keys.get(old.key.key_id).state(clock.now) == "rotated"


def test_a_revoked_key_cannot_be_rotated(keys: KeyStore) -> None:
    issued = keys.issue("alice")
    keys.revoke(issued.key.key_id)
    with pytest.raises(InvalidRequest):
        keys.rotate(issued.key.key_id)


def test_listing_hides_inactive_keys_unless_asked(keys: KeyStore) -> None:
    a = keys.issue("alice")
    b = keys.issue("alice")
    keys.issue("bob")
    keys.revoke(a.key.key_id)
    assert [k.key_id for k in keys.list(user_id="alice")] == [b.key.key_id]
    assert len(keys.list(user_id="alice", include_inactive=True)) == 2
    assert len(keys.list()) == 2


def test_unknown_key_ids_are_not_found(keys: KeyStore) -> None:
    with pytest.raises(NotFound):
        keys.revoke("nope")


def test_a_short_key_secret_is_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="16"):
        KeyStore(db, "short")


def test_users_round_trip_and_update(db: Database) -> None:
    users = UserStore(db)
    users.upsert(Principal("alice", "local", department="finance", groups=("a", "b")))
    users.upsert(Principal("alice", "local", department="research", groups=("c",)))
    alice = users.get("alice")
    assert alice is not None and alice.department == "research" and alice.groups == ("c",)
    assert alice.auth_method == "api_key"
    assert users.get("nobody") is None
