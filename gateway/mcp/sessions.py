"""MCP sessions of clients of the gateway: the `Mcp-Session-Id` a client gets at `initialize`
and sends with every later request (2025 protocol versions; the 2026 protocol has no sessions).

An id is self-validating: `<issued>.<nonce>.<mac>`, the MAC an HMAC-SHA256 over the caller's
user id, the virtual server, the issue time and the nonce, under a gateway secret. Any ingress
replica checks one without asking another replica or the database whether it exists, so no
stickiness is needed and `initialize` writes nothing. The caller and virtual server are not in
the id: the request's authenticated caller and path are put into the MAC, so an id presented
by another caller, on another virtual server, altered or made up fails alike (the endpoint
answers 404, and the client re-initialises, as the MCP spec says). An id is valid for
`mcp.session_ttl_s` after its issue; it does not slide with use (that would need a write per
request): a client whose session expired gets 404 and re-initialises.

Why not sessions as database rows: every request (each tool call) would read a row, and every
`initialize` write one, for what a MAC proves alone. The database still holds the one thing a
MAC cannot: the sessions a client ended (`DELETE`), as a hash of the id, kept until the id
would have expired anyway (so the table is bounded by the TTL), and read on every request that
carries an id, so that an ended session stays ended on every replica. It also holds each
session's resource subscriptions (`resources/subscribe` on one replica, the GET stream that
delivers the updates perhaps on another), bounded by the session's expiry the same way.

The secret is `mcp.session_key` when set (give every replica the same one), else a random one
created once in the gateway's database and read by every replica. A session id is not a
credential (every request is authenticated the gateway's usual way before its id is looked
at), so the key guards only against a caller using an id the gateway did not give them; the
database that would hold it is the shared state the replicas already trust. A database
failure is a 503 (`ServiceUnavailable`), never a request served on an unchecked id.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import ServiceUnavailable
from gateway.storage import Database

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mcp_sessions_ended (
        session_hash TEXT PRIMARY KEY,
        expires_at DOUBLE PRECISION NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS mcp_sessions_ended_expiry ON mcp_sessions_ended (expires_at)",
    """CREATE TABLE IF NOT EXISTS mcp_subscriptions (
        session_hash TEXT NOT NULL,
        uri TEXT NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (session_hash, uri)
    )""",
    "CREATE INDEX IF NOT EXISTS mcp_subscriptions_expiry ON mcp_subscriptions (expires_at)",
    """CREATE TABLE IF NOT EXISTS mcp_session_keys (
        key_id TEXT PRIMARY KEY,
        secret TEXT NOT NULL
    )""",
]
_KEY_ID = "current"
_CLOCK_SKEW_S = 60.0  # replicas' clocks may differ this much: an id "from the future" is forged


@dataclass(frozen=True, slots=True)
class McpSession:
    """A valid session: its id, whose it is, and until when it is valid (wall time)."""

    id: str
    user_id: str
    virtual_server: str
    expires_at: float


class McpSessions:
    """Issues, checks and ends session ids (see the module docstring). `clock` is wall time
    (replicas on several machines compare it); `nonce` makes the random part of an id."""

    def __init__(
        self,
        db: Database,
        *,
        ttl_s: float,
        key: str | None = None,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], bytes] = lambda: secrets.token_bytes(12),
    ) -> None:
        self._db = db
        self._ttl_s = ttl_s
        self._key = _derive(key.encode()) if key else None
        self._clock = clock
        self._nonce = nonce
        self._migrated = False

    @property
    def ttl_s(self) -> float:
        return self._ttl_s

    async def issue(self, user_id: str, virtual_server: str) -> McpSession:
        """A new session of `user_id` on `virtual_server`."""
        key = await self._current_key()
        issued = int(self._clock())
        nonce = _b64(self._nonce())
        mac = _mac(key, user_id, virtual_server, issued, nonce)
        return McpSession(
            f"{issued:x}.{nonce}.{mac}", user_id, virtual_server, issued + self._ttl_s
        )

    async def check(self, session_id: str, user_id: str, virtual_server: str) -> McpSession | None:
        """The session `session_id` when it was issued to `user_id` on `virtual_server`, has not
        expired and was not ended; None otherwise (the caller cannot tell which)."""
        parsed = _parse(session_id)
        if parsed is None:
            return None
        issued, nonce, mac = parsed
        now = self._clock()
        if issued > now + _CLOCK_SKEW_S or issued + self._ttl_s <= now:
            return None
        key = await self._current_key()
        if not hmac.compare_digest(mac, _mac(key, user_id, virtual_server, issued, nonce)):
            return None
        if await self._run(self._ended, session_id):
            return None
        return McpSession(session_id, user_id, virtual_server, issued + self._ttl_s)

    async def end(self, session: McpSession) -> None:
        """End `session` on every replica: its id is refused from now on."""
        await self._run(self._record_end, session)

    async def subscribe(self, session: McpSession, uri: str) -> None:
        """Record that `session` wants `notifications/resources/updated` for the gateway URI
        `uri` (until it unsubscribes or ends)."""
        await self._run(self._subscribe, session, uri)

    async def unsubscribe(self, session: McpSession, uri: str) -> None:
        await self._run(self._unsubscribe, session, uri)

    async def subscriptions(self, session: McpSession) -> frozenset[str]:
        """The gateway URIs `session` subscribed to, on whichever replica."""
        uris: frozenset[str] = await self._run(self._subscriptions, session)
        return uris

    async def _current_key(self) -> bytes:
        """The signing key; the database is asked once per process (no thread hop after)."""
        if self._key is not None:
            return self._key
        key: bytes = await self._run(self._signing_key)
        return key

    async def _run(self, work: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.to_thread(work, *args)
        except Exception as exc:
            log.exception("the MCP session register failed")
            raise ServiceUnavailable("The MCP session register is unavailable; try again.") from exc

    def _migrate(self) -> None:
        if not self._migrated:
            self._db.migrate(SCHEMA)
            self._migrated = True

    def _signing_key(self) -> bytes:
        if self._key is None:
            self._migrate()
            # Two replicas racing here both insert; the first one's secret is everyone's.
            self._db.execute(
                "INSERT INTO mcp_session_keys (key_id, secret) VALUES (?, ?) "
                "ON CONFLICT (key_id) DO NOTHING",
                (_KEY_ID, secrets.token_urlsafe(32)),
            )
            row = self._db.fetchone(
                "SELECT secret FROM mcp_session_keys WHERE key_id = ?", (_KEY_ID,)
            )
            assert row is not None  # inserted just above unless already there
            self._key = _derive(str(row[0]).encode())
        return self._key

    def _ended(self, session_id: str) -> bool:
        self._migrate()
        row = self._db.fetchone(
            "SELECT 1 FROM mcp_sessions_ended WHERE session_hash = ?", (_hash(session_id),)
        )
        return row is not None

    def _record_end(self, session: McpSession) -> None:
        self._migrate()
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM mcp_sessions_ended WHERE expires_at < ?", (self._clock(),))
            cur.execute(
                "INSERT INTO mcp_sessions_ended (session_hash, expires_at) VALUES (?, ?) "
                "ON CONFLICT (session_hash) DO NOTHING",
                (_hash(session.id), session.expires_at),
            )
            cur.execute(
                "DELETE FROM mcp_subscriptions WHERE session_hash = ?", (_hash(session.id),)
            )

    def _subscribe(self, session: McpSession, uri: str) -> None:
        self._migrate()
        with self._db.transaction() as cur:
            cur.execute("DELETE FROM mcp_subscriptions WHERE expires_at < ?", (self._clock(),))
            cur.execute(
                "INSERT INTO mcp_subscriptions (session_hash, uri, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT (session_hash, uri) DO NOTHING",
                (_hash(session.id), uri, session.expires_at),
            )

    def _unsubscribe(self, session: McpSession, uri: str) -> None:
        self._migrate()
        self._db.execute(
            "DELETE FROM mcp_subscriptions WHERE session_hash = ? AND uri = ?",
            (_hash(session.id), uri),
        )

    def _subscriptions(self, session: McpSession) -> frozenset[str]:
        self._migrate()
        rows = self._db.fetchall(
            "SELECT uri FROM mcp_subscriptions WHERE session_hash = ?", (_hash(session.id),)
        )
        return frozenset(str(row[0]) for row in rows)


def _derive(secret: bytes) -> bytes:
    # Its own key, so a secret also used elsewhere never keys session ids with the same bytes.
    return hmac.new(secret, b"raygate mcp session id", hashlib.sha256).digest()


def _mac(key: bytes, user_id: str, virtual_server: str, issued: int, nonce: str) -> str:
    message = json.dumps([user_id, virtual_server, issued, nonce]).encode()
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def _parse(session_id: str) -> tuple[int, str, str] | None:
    parts = session_id.split(".")
    if len(parts) != 3 or len(session_id) > 200:
        return None
    issued, nonce, mac = parts
    try:
        return int(issued, 16), nonce, mac
    except ValueError:
        return None


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
