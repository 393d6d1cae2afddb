"""People from an LDAP / Active Directory server, as Principals.

Two ways to find the user, picked by the config:

- search-then-bind (`user_search_base`): the service account (or an anonymous connection)
  searches `user_filter` for exactly one entry, then that entry's DN binds with the password;
- direct bind (`user_dn_template`): the DN is built from the username and binds at once; the
  user's own connection then reads their entry and groups.

Successful logins and lookups are kept for `cache_ttl_s`, so a client that sends its
credentials with every request costs the directory one bind per TTL. A login is cached under
the username with a keyed hash of the password (never the password), so a different password
always goes to the directory. Failed logins are never cached: the directory sees every one
of them (and can lock the account as its policy says).

    directory = LdapDirectory(config.auth.ldap)
    principal = await directory.authenticate("alice", "s3cret")
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

from gateway.errors import AuthError, ServiceUnavailable
from gateway.identity.ldap_config import LdapAttributes, LdapConfig
from gateway.identity.ldap_connections import (
    DirectoryEntry,
    DirectoryReader,
    LdapConnections,
    LdapSession,
)
from gateway.identity.ldap_groups import resolve_groups
from gateway.identity.ldap_syntax import escape_dn_value, escape_filter_value, fill
from gateway.identity.principal import Principal

__all__ = ["LdapAttributes", "LdapConfig", "LdapDirectory"]

log = logging.getLogger(__name__)

AUTH_METHOD = "ldap"
# Longer than any real login name; keeps absurd input away from the directory.
_MAX_USERNAME_CHARS = 256
_MAX_CACHED = 10_000

K = TypeVar("K")
V = TypeVar("V")


class LdapDirectory:
    """Authenticates users against the directory and resolves them to Principals."""

    def __init__(self, config: LdapConfig, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._config = config
        self._connections = LdapConnections(config)
        self._logins: _TtlCache[str, tuple[bytes, Principal]] = _TtlCache(config.cache_ttl_s, clock)
        self._lookups: _TtlCache[str, Principal] = _TtlCache(config.cache_ttl_s, clock)
        # Per-process key for the cached password hashes: a memory dump of the cache alone
        # gives no offline guessing target that outlives the process.
        self._hash_key = secrets.token_bytes(32)

    async def authenticate(self, username: str, password: str) -> Principal:
        """The Principal for `username` if `password` is theirs.

        AuthError ("Incorrect username or password.", code invalid_credentials) for a wrong
        password, an unknown or ambiguous user and an empty password alike, so that answers
        do not tell which usernames exist. ServiceUnavailable (503) when the directory is
        down, refuses TLS or refuses the service account.
        """
        if not _plausible(username) or not password:
            raise _rejected()
        digest = hmac.new(self._hash_key, password.encode(), hashlib.sha256).digest()
        cached = self._logins.get(username)
        if cached is not None and hmac.compare_digest(cached[0], digest):
            return cached[1]
        principal = await self._connections.run(
            partial(self._authenticate_in_thread, username, password)
        )
        self._logins.put(username, (digest, principal))
        self._lookups.put(username, principal)
        return principal

    async def lookup(self, username: str) -> Principal | None:
        """The Principal for `username` without their password (e.g. an API key's owner), or
        None when the directory has no such user. Unknown users are not cached, so a user
        added to the directory is found at once. ServiceUnavailable as for `authenticate`."""
        if not _plausible(username):
            return None
        cached = self._lookups.get(username)
        if cached is not None:
            return cached
        principal = await self._connections.run(partial(self._lookup_in_thread, username))
        if principal is not None:
            self._lookups.put(username, principal)
        return principal

    async def aclose(self) -> None:
        """Close every directory connection; the directory is unusable afterwards."""
        await self._connections.aclose()

    def _authenticate_in_thread(
        self, username: str, password: str, session: LdapSession
    ) -> Principal:
        config = self._config
        if config.user_dn_template is not None:
            dn = fill(config.user_dn_template, username=escape_dn_value(username))
            reader = session.login(dn, password)
            if reader is None:
                raise _rejected()
            entry = reader.read(dn, self._user_attributes())
            if entry is None:
                raise _misconfigured(f"{dn!r} bound but may not read its own entry")
        else:
            reader = session.service()
            entry = self._find_user(reader, username)
            if entry is None or session.login(entry.dn, password) is None:
                raise _rejected()
            # The login connection is now bound as the user; the service account reads on.
            reader = session.service()
        return self._principal(reader, entry, username)

    def _lookup_in_thread(self, username: str, session: LdapSession) -> Principal | None:
        config = self._config
        reader = session.service()
        if config.user_dn_template is not None:
            dn = fill(config.user_dn_template, username=escape_dn_value(username))
            entry = reader.read(dn, self._user_attributes())
        else:
            entry = self._find_user(reader, username)
        return None if entry is None else self._principal(reader, entry, username)

    def _find_user(self, reader: DirectoryReader, username: str) -> DirectoryEntry | None:
        config = self._config
        assert config.user_search_base is not None
        search_filter = fill(config.user_filter, username=escape_filter_value(username))
        # Two at most: enough to tell "exactly one" from "ambiguous" without a big answer.
        entries = reader.search(
            config.user_search_base, search_filter, self._user_attributes(), size_limit=2
        )
        return entries[0] if len(entries) == 1 else None

    def _principal(
        self, reader: DirectoryReader, entry: DirectoryEntry, username: str
    ) -> Principal:
        attributes = self._config.attributes
        user_id = entry.first(attributes.user_id)
        if user_id is None:
            # Falling back to the typed name would give "Alice" and "alice" two identities.
            raise _misconfigured(f"{entry.dn!r} has no {attributes.user_id!r} (attributes.user_id)")
        return Principal(
            user_id=user_id,
            auth_method=AUTH_METHOD,
            email=entry.first(attributes.email),
            display_name=entry.first(attributes.display_name),
            department=entry.first(attributes.department),
            title=entry.first(attributes.title),
            groups=resolve_groups(reader, entry, username, self._config),
        )

    def _user_attributes(self) -> list[str]:
        a = self._config.attributes
        names = [a.user_id, a.email, a.display_name, a.department, a.title, a.member_of]
        return [name for name in names if name]


class _TtlCache(Generic[K, V]):
    """Values that expire `ttl_s` after they were put; the oldest go first when full."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        expires_at, value = item
        if self._clock() >= expires_at:
            del self._items[key]
            return None
        return value

    def put(self, key: K, value: V) -> None:
        if self._ttl_s <= 0:
            return
        self._items.pop(key, None)
        self._items[key] = (self._clock() + self._ttl_s, value)
        while len(self._items) > _MAX_CACHED:
            self._items.popitem(last=False)


def _plausible(username: str) -> bool:
    # Control characters (NUL included) are in no real login name; refusing them here means
    # they never reach a filter or DN, escaped or not.
    return 0 < len(username) <= _MAX_USERNAME_CHARS and username.isprintable()


def _rejected() -> AuthError:
    return AuthError("Incorrect username or password.", code="invalid_credentials")


def _misconfigured(detail: str) -> ServiceUnavailable:
    # The details name directory entries: for the operator's log, not for the caller.
    log.error("LDAP directory answer unusable: %s; check auth.ldap and the access rules", detail)
    return ServiceUnavailable(
        "The user directory's answer is missing what the gateway needs.",
        code="directory_misconfigured",
    )
