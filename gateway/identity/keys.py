"""Issued API keys: high-entropy, shown once, stored only as a keyed hash.

A key reads `rg-<key id>-<43 url-safe characters>` (256 random bits). The database keeps
HMAC-SHA256(key secret, key) and never the key, so a copy of the database does not let anyone
call the gateway, and without the key secret (`auth.key_secret`) not even check a guess.

Revocation is immediate and does not depend on anyone's clock: `revoked_at` set means revoked.
Rotation is separate: the replaced key keeps working until `grace_until`, unless it is revoked
first. Revoking a key also revokes the keys it replaced that are still in their grace period,
so one revocation stops every secret of that key's line.

A key may carry an admin role (`admin_role`): such a key opens only the admin routes (with
that role), never a model route, and only an `admin` may issue, rotate or revoke one.

What a key is (its id, owner, models, expiry, admin role) is bound to it by a MAC under the
key secret (`row_mac`): someone who can write the database but does not hold the key secret
cannot hand their key to another owner, widen it or make it an admin key; such a row is
refused. (Revocation is a state, not bound: a database writer could clear it. The audit trail,
whose chain they cannot rewrite, keeps the revocation.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway.errors import AuthError, InvalidRequest, NotFound
from gateway.identity.roles import ADMIN_ROLES, is_admin_role
from gateway.storage import Database
from gateway.storage.database import Cursor

log = logging.getLogger(__name__)

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
        replaced_by TEXT,
        grace_until DOUBLE PRECISION,
        admin_role TEXT,
        row_mac TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id)",
]

# Columns added after the first release, added to older tables on open.
_ADDED_COLUMNS = (
    ("grace_until", "DOUBLE PRECISION"),
    ("admin_role", "TEXT"),
    ("row_mac", "TEXT"),
)

# The first release kept the end of a rotation's grace period in `revoked_at` (a future time).
# Moved to `grace_until`, so that `revoked_at` means revoked, now, on every clock.
_MOVE_GRACE = """UPDATE api_keys SET grace_until = revoked_at, revoked_at = NULL
    WHERE replaced_by IS NOT NULL AND revoked_at IS NOT NULL AND grace_until IS NULL"""

_COLUMNS = (
    "key_id, user_id, name, hint, models_json, created_at, expires_at, revoked_at, replaced_by, "
    "grace_until, admin_role"
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
    revoked_at: float | None  # set: revoked, whatever the time (revocation is immediate)
    replaced_by: str | None  # the key that rotation issued in its place
    grace_until: float | None = None  # a replaced key works until then (unless revoked)
    admin_role: str | None = None  # an admin key: opens admin routes with this role only

    def state(self, now: float) -> str:
        """`active`, `expired`, `revoked`, `rotating` (replaced, still working until its grace
        period ends) or `rotated` (replaced, and past it)."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        if self.replaced_by is not None:
            in_grace = self.grace_until is not None and self.grace_until > now
            return "rotating" if in_grace else "rotated"
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
            "grace_until": self.grace_until,
            "admin_role": self.admin_role,
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
        added = db.add_missing_columns("api_keys", _ADDED_COLUMNS)
        db.execute(_MOVE_GRACE)
        if "row_mac" in added:
            self._bind_existing_rows()

    def issue(
        self,
        user_id: str,
        *,
        name: str = "",
        expires_at: float | None = None,
        models: Sequence[str] | None = None,
        admin_role: str | None = None,
    ) -> IssuedKey:
        """A new key for `user_id`; with `admin_role`, an admin key (admin routes only)."""
        if admin_role is not None and not is_admin_role(admin_role):
            raise InvalidRequest(
                f"{admin_role!r} is not an admin role; one of {', '.join(ADMIN_ROLES)}.",
                param="admin_role",
                code="invalid_admin_role",
            )
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
            admin_role=admin_role,
        )
        self._db.execute(
            f"INSERT INTO api_keys (key_hash, row_mac, {_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                self._hash(secret),
                self._row_mac(key),
                key.key_id,
                key.user_id,
                key.name,
                key.hint,
                json.dumps(list(key.models)) if key.models is not None else None,
                key.created_at,
                key.expires_at,
                None,
                None,
                None,
                key.admin_role,
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
        """Keys by creation time, optionally one user's; those that work (active, or rotating
        within their grace period) unless asked for all."""
        sql = f"SELECT {_COLUMNS} FROM api_keys"
        params: tuple[object, ...] = ()
        if user_id is not None:
            sql, params = sql + " WHERE user_id = ?", (user_id,)
        keys = [_key(row) for row in self._db.fetchall(sql + " ORDER BY created_at", params)]
        now = self._clock()
        return [k for k in keys if include_inactive or k.state(now) in ("active", "rotating")]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key now, and every key it replaced that is still in its grace period.

        Revoking a revoked key keeps its first revocation time.
        """
        self.get(key_id)
        now = self._clock()
        with self._db.transaction(exclusive=True) as cur:  # reads, then writes
            line = _predecessors(cur, key_id)
            cur.execute(
                f"UPDATE api_keys SET revoked_at = ? "
                f"WHERE key_id IN ({', '.join('?' * len(line))}) AND revoked_at IS NULL",
                (now, *line),
            )
        return self.get(key_id)

    def rotate(self, key_id: str, *, grace_s: float = 0.0) -> IssuedKey:
        """A new key with the old one's owner, name, models, expiry and admin role; the old key
        stops working after `grace_s` seconds (0: at once), so clients can be moved over.

        A key is rotated once: a key already replaced is refused (rotate its replacement).
        """
        old = self.get(key_id)
        now = self._clock()
        state = old.state(now)
        if state != "active" or old.replaced_by is not None:
            why = f"was already replaced by {old.replaced_by}" if old.replaced_by else f"is {state}"
            raise InvalidRequest(
                f"API key {key_id} {why}; rotate or issue another key instead.",
                code="key_not_active",
            )
        new = self.issue(
            old.user_id,
            name=old.name,
            expires_at=old.expires_at,
            models=old.models,
            admin_role=old.admin_role,
        )
        with self._db.transaction(exclusive=True) as cur:  # reads, then writes
            cur.execute(
                "UPDATE api_keys SET grace_until = ?, replaced_by = ? "
                "WHERE key_id = ? AND replaced_by IS NULL AND revoked_at IS NULL",
                (now + grace_s, new.key.key_id, key_id),
            )
            replaced = cur.rowcount == 1
        if not replaced:
            # Another rotation or a revocation got there first: the new key must not outlive it.
            self.revoke(new.key.key_id)
            raise InvalidRequest(
                f"API key {key_id} changed while it was being rotated; nothing was issued.",
                code="key_not_active",
            )
        return new

    def verify(self, secret: str) -> ApiKey:
        """The active key behind `secret`, or AuthError (unknown, revoked and expired keys
        get distinct codes but the same lack of detail about anyone else's keys)."""
        row = self._db.fetchone(
            f"SELECT {_COLUMNS}, row_mac FROM api_keys WHERE key_hash = ?", (self._hash(secret),)
        )
        if row is None:
            raise AuthError("Incorrect API key provided.")
        key = _key(row[:-1])
        if not hmac.compare_digest(str(row[-1]), self._row_mac(key)):
            log.error("api key %s: its row does not match its MAC; refused", key.key_id)
            raise AuthError("Incorrect API key provided.")
        state = key.state(self._clock())
        if state in ("revoked", "rotated"):
            raise AuthError("This API key has been revoked.", code="api_key_revoked")
        if state == "expired":
            raise AuthError("This API key has expired.", code="api_key_expired")
        return key

    def _row_mac(self, key: ApiKey) -> str:
        bound = [key.key_id, key.user_id, key.models, key.created_at, key.expires_at]
        message = json.dumps([*bound, key.admin_role], separators=(",", ":"))
        return hmac.new(self._pepper, b"api-key-row\x00" + message.encode(), "sha256").hexdigest()

    def _bind_existing_rows(self) -> None:
        """MAC the rows of a table from before `row_mac` (once, when the column is added)."""
        for row in self._db.fetchall(f"SELECT {_COLUMNS} FROM api_keys WHERE row_mac IS NULL"):
            key = _key(row)
            self._db.execute(
                "UPDATE api_keys SET row_mac = ? WHERE key_id = ?", (self._row_mac(key), key.key_id)
            )

    def _hash(self, secret: str) -> str:
        return hmac.new(self._pepper, secret.encode(), hashlib.sha256).hexdigest()


def looks_like_issued_key(secret: str) -> bool:
    """Whether a presented secret has the shape of a raygate key (cheap; no lookup)."""
    return secret.startswith(KEY_PREFIX) and secret.count("-") >= 2


def _predecessors(cur: Cursor, key_id: str) -> list[str]:
    """`key_id` and the keys it replaced, transitively (rotation makes a line, never a tree)."""
    line = [key_id]
    while True:
        cur.execute("SELECT key_id FROM api_keys WHERE replaced_by = ?", (line[-1],))
        row = cur.fetchone()
        if row is None or row[0] in line:
            return line
        line.append(str(row[0]))


def _key(row: tuple[object, ...]) -> ApiKey:
    key_id, user_id, name, hint, models, created, expires, revoked, replaced, grace, role = row
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
        grace_until=None if grace is None else float(grace),  # type: ignore[arg-type]
        admin_role=None if role is None else str(role),
    )
