"""Issued API keys: high-entropy, shown once, stored only as a keyed hash.

A key reads `rg-<key id>-<43 url-safe characters>` (256 random bits). The database keeps
HMAC-SHA256(key secret, key) and never the key, so a copy of the database does not let anyone
call the gateway, and without the key secret (`auth.key_secret`) not even check a guess.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.errors import AuthError, InvalidRequest, NotFound
from gateway.storage import Database

KEY_PREFIX = "rg-"

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        key_hash TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        hint TEXT NOT NULL,
        models_json TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION,
        revoked_at DOUBLE PRECISION,
        replaced_by TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id)",
]

_COLUMNS = (
    "key_id, user_id, name, hint, models_json, created_at, expires_at, revoked_at, replaced_by"
)


@dataclass(frozen=True, slots=True)
class ApiKey:
    """What the gateway keeps about an issued key (never the key itself)."""

    key_id: str
    user_id: str
    name: str
    hint: str  # the key's first characters, to tell keys apart in listings
    models: tuple[str, ...] | None  # model aliases the key may use; None = whatever the owner may
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    replaced_by: str | None

    def state(self, now: float) -> str:
        """`active`, `expired` or `revoked`."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_dict(self, now: float) -> dict[str, object]:
        return {
            "id": self.key_id,
            "user": self.user_id,
            "name": self.name,
            "hint": self.hint,
            "models": list(self.models) if self.models is not None else None,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "replaced_by": self.replaced_by,
            "state": self.state(now),
        }


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly issued key: `secret` is shown to the caller once and stored nowhere."""

    key: ApiKey
    secret: str


class KeyStore:
    """Issues, lists, rotates, revokes and verifies API keys."""

    def __init__(
        self, db: Database, key_secret: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        if len(key_secret) < 16:
            raise ValueError("auth.key_secret must be at least 16 characters")
        self._db = db
        self._pepper = key_secret.encode()
        self._clock = clock
        db.migrate(SCHEMA)

    def issue(
        self,
        user_id: str,
        *,
        name: str = "",
        expires_at: float | None = None,
        models: Sequence[str] | None = None,
    ) -> IssuedKey:
        """A new key for `user_id`."""
        key_id = secrets.token_hex(6)
        secret = f"{KEY_PREFIX}{key_id}-{secrets.token_urlsafe(32)}"
        key = ApiKey(
            key_id=key_id,
            user_id=user_id,
            name=name,
            hint=secret[: len(KEY_PREFIX) + len(key_id) + 5],
            models=tuple(models) if models is not None else None,
            created_at=self._clock(),
            expires_at=expires_at,
            revoked_at=None,
            replaced_by=None,
        )
        self._db.execute(
            f"INSERT INTO api_keys (key_hash, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._hash(secret),
                key.key_id,
                key.user_id,
                key.name,
                key.hint,
                json.dumps(list(key.models)) if key.models is not None else None,
                key.created_at,
                key.expires_at,
                None,
                None,
            ),
        )
        return IssuedKey(key, secret)

    def get(self, key_id: str) -> ApiKey:
        """The key with this id, or NotFound."""
        row = self._db.fetchone(f"SELECT {_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        if row is None:
            raise NotFound(f"No API key with id {key_id!r}.", code="key_not_found")
        return _key(row)

    def list(self, *, user_id: str | None = None, include_inactive: bool = False) -> list[ApiKey]:
        """Keys by creation time, optionally one user's; active ones unless asked for all."""
        sql = f"SELECT {_COLUMNS} FROM api_keys"
        params: tuple[object, ...] = ()
        if user_id is not None:
            sql, params = sql + " WHERE user_id = ?", (user_id,)
        keys = [_key(row) for row in self._db.fetchall(sql + " ORDER BY created_at", params)]
        now = self._clock()
        return [k for k in keys if include_inactive or k.state(now) == "active"]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key now; revoking a revoked key keeps its first revocation time."""
        self.get(key_id)
        self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
            (self._clock(), key_id),
        )
        return self.get(key_id)

    def rotate(self, key_id: str, *, grace_s: float = 0.0) -> IssuedKey:
        """A new key with the old one's owner, name, models and expiry; the old key stops
        working after `grace_s` seconds (0: at once), so clients can be moved over."""
        old = self.get(key_id)
        if old.state(self._clock()) != "active":
            raise InvalidRequest(
                f"API key {key_id} is {old.state(self._clock())}; issue a new one instead.",
                code="key_not_active",
            )
        new = self.issue(old.user_id, name=old.name, expires_at=old.expires_at, models=old.models)
        self._db.execute(
            "UPDATE api_keys SET revoked_at = ?, replaced_by = ? WHERE key_id = ?",
            (self._clock() + grace_s, new.key.key_id, key_id),
        )
        return new

    def verify(self, secret: str) -> ApiKey:
        """The active key behind `secret`, or AuthError (unknown, revoked and expired keys
        get distinct codes but the same lack of detail about anyone else's keys)."""
        row = self._db.fetchone(
            f"SELECT {_COLUMNS} FROM api_keys WHERE key_hash = ?", (self._hash(secret),)
        )
        if row is None:
            raise AuthError("Incorrect API key provided.")
        key = _key(row)
        state = key.state(self._clock())
        if state == "revoked":
            raise AuthError("This API key has been revoked.", code="api_key_revoked")
        if state == "expired":
            raise AuthError("This API key has expired.", code="api_key_expired")
        return key

    def _hash(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).hexdigest()


def looks_like_issued_key(secret: str) -> bool:
    """Whether a presented secret has the shape of a raygate key (cheap; no lookup)."""
    return secret.startswith(KEY_PREFIX) and secret.count("-") >= 2


def _key(row: tuple[object, ...]) -> ApiKey:
    key_id, user_id, name, hint, models, created, expires, revoked, replaced = row
    return ApiKey(
        key_id=str(key_id),
        user_id=str(user_id),
        name=str(name),
        hint=str(hint),
        models=tuple(json.loads(str(models))) if models is not None else None,
        created_at=float(created),  # type: ignore[arg-type]
        expires_at=None if expires is None else float(expires),  # type: ignore[arg-type]
        revoked_at=None if revoked is None else float(revoked),  # type: ignore[arg-type]
        replaced_by=None if replaced is None else str(replaced),
    )
