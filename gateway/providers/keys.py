"""Provider keys set at run time: an upstream's API key added or rotated through the admin API
(`PUT /admin/providers/{name}/key`) or the CLI (`raygate providers set-key`), no restart.

Keys live in the gateway's database (`provider_keys`), sealed with `storage.data_key`: without
a data key the store takes none, so a key is never stored in clear. A key set here replaces
the config's `api_key` and its environment variable; removing it goes back to them.

Every replica that calls upstreams (the router) or admits requests (the ingress) holds a
`KeyedConfig`: the config with these keys applied, checked against the table on the request
path at most once per `routing.key_sync_interval_s` (default 2 s). A request that reaches a
replica more than one interval after a change is served with it: a provider whose key was
missing is switched on, a rotated key is sent. A read that fails keeps the last keys.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.errors import InvalidRequest
from gateway.storage import Database
from gateway.storage.sealing import Sealer

if TYPE_CHECKING:
    from gateway.config import GatewayConfig

log = logging.getLogger(__name__)

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS provider_keys (
        provider TEXT PRIMARY KEY,
        sealed_key TEXT NOT NULL,
        hint TEXT NOT NULL,
        updated_at DOUBLE PRECISION NOT NULL,
        updated_by TEXT NOT NULL
    )""",
]


@dataclass(frozen=True, slots=True)
class ProviderKeyInfo:
    """What may be shown of a provider key: never the key, only its last characters."""

    provider: str
    hint: str
    updated_at: float
    updated_by: str

    def as_dict(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "hint": self.hint,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


class ProviderKeyStore:
    """Sets, removes, lists and opens the provider keys in the gateway's database."""

    def __init__(
        self, db: Database, sealer: Sealer | None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._sealer = sealer
        self._clock = clock
        db.migrate(SCHEMA)

    @classmethod
    def from_config(cls, config: GatewayConfig, db: Database | None = None) -> ProviderKeyStore:
        """The store over the config's database and data key (a new connection unless `db`)."""
        sealer = Sealer.from_keyring(config.storage.data_keyring())
        return cls(db or Database(config.storage.url), sealer)

    def set(self, provider: str, key: str, *, by: str) -> ProviderKeyInfo:
        """Store `key` for `provider` (replacing any), sealed; 400 without a data key or for a
        key that could not be sent in a header."""
        if self._sealer is None:
            raise InvalidRequest(
                "Provider keys are stored only sealed: set storage.data_key (RAYGATE_DATA_KEY).",
                code="provider_keys_not_enabled",
            )
        key = key.strip()
        if not key or any(c.isspace() or not c.isprintable() for c in key):
            raise InvalidRequest(
                "api_key must be one line of printable characters without spaces",
                param="api_key",
            )
        info = ProviderKeyInfo(provider, "..." + key[-4:], self._clock(), by)
        sealed = self._sealer.seal(key, context=_context(provider))
        with self._db.transaction() as cursor:
            cursor.execute("DELETE FROM provider_keys WHERE provider = ?", (provider,))
            cursor.execute(
                "INSERT INTO provider_keys (provider, sealed_key, hint, updated_at, updated_by) "
                "VALUES (?, ?, ?, ?, ?)",
                (provider, sealed, info.hint, info.updated_at, by),
            )
        return info

    def remove(self, provider: str) -> bool:
        """Remove `provider`'s key (the config's applies again); whether there was one."""
        with self._db.transaction() as cursor:
            cursor.execute("DELETE FROM provider_keys WHERE provider = ?", (provider,))
            return bool(cursor.rowcount)

    def list(self) -> list[ProviderKeyInfo]:
        """Every stored key's description, by provider name."""
        rows = self._db.fetchall(
            "SELECT provider, hint, updated_at, updated_by FROM provider_keys ORDER BY provider"
        )
        return [ProviderKeyInfo(str(p), str(h), float(u), str(b)) for p, h, u, b in rows]

    def stamp(self) -> tuple[tuple[str, float], ...]:
        """What changes whenever a key is set or removed (cheap to compare)."""
        rows = self._db.fetchall("SELECT provider, updated_at FROM provider_keys ORDER BY provider")
        return tuple((str(p), float(u)) for p, u in rows)

    def keys(self) -> dict[str, str]:
        """Every stored key, opened; a key that does not open (SealError) raises."""
        if self._sealer is None:
            return {}
        rows = self._db.fetchall("SELECT provider, sealed_key FROM provider_keys")
        return {str(p): self._sealer.open(str(s), context=_context(str(p))) for p, s in rows}


def _context(provider: str) -> str:
    return f"provider-key:{provider}"


class KeyedConfig:
    """The gateway config with the provider keys set at run time applied (`current`),
    refreshed by `fresh()` at most once per `interval_s`; `on_change` listeners run with each
    new config before `fresh()` returns it."""

    def __init__(
        self,
        config: GatewayConfig,
        store: ProviderKeyStore | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = config
        self.current = config
        self.infos: list[ProviderKeyInfo] = []
        self._store = store
        self._interval = config.routing.key_sync_interval_s
        self._clock = clock
        self._checked = -math.inf
        self._stamp: tuple[tuple[str, float], ...] = ()
        self._lock = asyncio.Lock()
        self._listeners: list[Callable[[GatewayConfig], Awaitable[None]]] = []

    def on_change(self, listener: Callable[[GatewayConfig], Awaitable[None]]) -> None:
        self._listeners.append(listener)

    async def fresh(self) -> GatewayConfig:
        """The current config, after reading the keys again when an interval has passed."""
        if self._store is None or self._clock() - self._checked < self._interval:
            return self.current
        async with self._lock:
            started = self._clock()
            if started - self._checked < self._interval:  # refreshed while this one waited
                return self.current
            try:
                await self._refresh(self._store)
            except Exception:  # a database or key problem: keep serving with the last keys
                log.warning("provider keys could not be read; keeping the last ones", exc_info=True)
            self._checked = started
        return self.current

    async def _refresh(self, store: ProviderKeyStore) -> None:
        stamp = await asyncio.to_thread(store.stamp)
        if stamp == self._stamp:
            return
        keys = await asyncio.to_thread(store.keys)
        self.infos = await asyncio.to_thread(store.list)
        self.current = self.base.with_provider_keys(keys)
        self._stamp = stamp
        log.info("provider keys changed: %s", ", ".join(sorted(keys)) or "none set")
        for listener in self._listeners:
            await listener(self.current)
