"""Connections to the directory: bounded, reused, verified, and off the event loop.

ldap3 is synchronous. Every directory call runs on one of `pool_size` worker threads owned by
the directory (not asyncio's shared default executor, which other stages need), and each
thread keeps up to two open connections that it reuses from call to call:

- the service connection, bound once as `bind_dn` (or anonymous), for searches;
- the login connection, re-bound as each user whose password is being checked.

A connection that the server or a firewall dropped while idle shows up on its next use; the
call is then retried once on fresh connections. A directory that is down, refuses TLS or
rejects the service account is the gateway's problem, not the caller's: ServiceUnavailable
(503). Only a rejected user password is the caller's fault, and the caller decides that.
"""

from __future__ import annotations

import asyncio
import logging
import math
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import ldap3
from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPPasswordIsMandatoryError,
    LDAPResponseTimeoutError,
    LDAPSASLPrepError,
    LDAPSocketOpenError,
    LDAPStartTLSError,
)

from gateway.errors import ServiceUnavailable
from gateway.identity.ldap_config import LdapConfig

log = logging.getLogger(__name__)

T = TypeVar("T")

_SUCCESS = 0
_SIZE_LIMIT_EXCEEDED = 4
_NO_SUCH_OBJECT = 32
_INSUFFICIENT_ACCESS = 50
# Bind results that mean "not these credentials" (AD also reports locked / expired accounts as
# 49); anything else (busy, unavailable, other) is the directory's failure, not the user's.
_CREDENTIALS_REJECTED = {48, 49, 50, 53}
_CONNECTION_LOST = (LDAPCommunicationError, LDAPResponseTimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One entry as read from the directory: its DN and text values, names case-folded."""

    dn: str
    attributes: Mapping[str, tuple[str, ...]]

    def values(self, name: str | None) -> tuple[str, ...]:
        """Every value of attribute `name` (none when it is absent or `name` is None)."""
        return self.attributes.get(name.casefold(), ()) if name else ()

    def first(self, name: str | None) -> str | None:
        """The first value of attribute `name`, or None."""
        values = self.values(name)
        return values[0] if values else None


class DirectoryReader:
    """Searches over one open connection, answered as DirectoryEntry values."""

    def __init__(self, connection: ldap3.Connection, time_limit_s: int) -> None:
        self._connection = connection
        self._time_limit_s = time_limit_s

    def search(
        self, base: str, search_filter: str, attributes: Iterable[str], *, size_limit: int = 0
    ) -> list[DirectoryEntry]:
        """Entries under `base` matching `search_filter` (at most `size_limit`, 0: no limit).

        A missing base or a refused search is a misconfiguration: ServiceUnavailable.
        """
        self._connection.search(
            base,
            search_filter,
            ldap3.SUBTREE,
            attributes=list(attributes),
            size_limit=size_limit,
            time_limit=self._time_limit_s,
        )
        result = self._connection.result
        if result["result"] not in (_SUCCESS, _SIZE_LIMIT_EXCEEDED):
            log.error("LDAP search under %r failed: %s", base, result.get("description"))
            raise ServiceUnavailable(
                "The user directory refused the gateway's search.", code="directory_unavailable"
            )
        return self._entries()

    def read(self, dn: str, attributes: Iterable[str]) -> DirectoryEntry | None:
        """The entry at `dn`, or None when it does not exist or may not be read."""
        self._connection.search(
            dn,
            "(objectClass=*)",
            ldap3.BASE,
            attributes=list(attributes),
            time_limit=self._time_limit_s,
        )
        result = self._connection.result["result"]
        if result in (_NO_SUCH_OBJECT, _INSUFFICIENT_ACCESS):
            return None
        if result != _SUCCESS:
            log.error("LDAP read of %r failed: %s", dn, self._connection.result.get("description"))
            raise ServiceUnavailable(
                "The user directory refused the gateway's read.", code="directory_unavailable"
            )
        entries = self._entries()
        return entries[0] if entries else None

    def _entries(self) -> list[DirectoryEntry]:
        # Raw bytes decoded here rather than ldap3's formatters: without the server's schema
        # (not fetched, to save a round trip per connection) those guess per value.
        return [
            DirectoryEntry(
                dn=item["dn"],
                attributes={
                    name.casefold(): tuple(v.decode("utf-8", "replace") for v in values)
                    for name, values in item["raw_attributes"].items()
                },
            )
            for item in self._connection.response or ()
            if item.get("type") == "searchResEntry"
        ]


class LdapSession:
    """One worker thread's connections: what a unit of directory work is given."""

    def __init__(self, connections: LdapConnections) -> None:
        self._connections = connections
        self._service: ldap3.Connection | None = None
        self._login: ldap3.Connection | None = None

    @property
    def has_connections(self) -> bool:
        """Whether this thread already holds open connections (which may have gone stale)."""
        return self._service is not None or self._login is not None

    def service(self) -> DirectoryReader:
        """A reader bound as the service account (or anonymous when none is configured)."""
        if self._service is None or self._service.closed:
            self._service = self._connections.open_service_connection()
        return self._connections.reader(self._service)

    def login(self, dn: str, password: str) -> DirectoryReader | None:
        """A reader bound as `dn` when `password` is right for it, else None.

        An empty password is refused here, before the directory sees it: LDAP treats a name
        with an empty password as an "unauthenticated bind" and answers success unchecked.
        """
        if not dn or not password:
            return None
        connections = self._connections
        login = self._login
        if login is None or login.closed or (connections.start_tls and not login.tls_started):
            # Also when ldap3 closed it: its bind() would silently reopen without StartTLS
            # and send the password in clear text.
            self.reset_login()
            login = self._login = connections.open_connection()
        login.authentication = ldap3.SIMPLE
        login.user = dn
        login.password = password
        try:
            login.bind(read_server_info=False)
        except (LDAPPasswordIsMandatoryError, LDAPSASLPrepError):
            # A password that cannot be sent as an LDAP simple bind cannot be anybody's.
            return None
        finally:
            # The connection outlives this call; the user's password must not.
            login.password = None
        code = login.result["result"]
        if code == _SUCCESS:
            return connections.reader(login)
        if code in _CREDENTIALS_REJECTED:
            return None
        log.error("LDAP bind failed for a reason other than credentials: %s", login.result)
        raise ServiceUnavailable(
            "The user directory could not check the credentials.", code="directory_unavailable"
        )

    def reset(self) -> None:
        """Close this thread's connections; the next use opens fresh ones."""
        _close(self._service)
        self._service = None
        self.reset_login()

    def reset_login(self) -> None:
        """Close the login connection only."""
        _close(self._login)
        self._login = None


class LdapConnections:
    """The worker threads and their connections; `run` executes directory work on one."""

    def __init__(self, config: LdapConfig) -> None:
        self._config = config
        tls = _VerifiedTls(config.ca_file) if config.uses_tls else None
        self._server = ldap3.Server(
            config.url, get_info=ldap3.NONE, tls=tls, connect_timeout=config.timeout_s
        )
        # ldap3 packs the receive timeout into a timeval of whole seconds.
        self._receive_timeout_s = max(1, math.ceil(config.timeout_s))
        self._executor = ThreadPoolExecutor(
            max_workers=config.pool_size, thread_name_prefix="raygate-ldap"
        )
        self._local = threading.local()
        self._sessions: list[LdapSession] = []
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, work: Callable[[LdapSession], T]) -> T:
        """`work` on a worker thread with that thread's session; directory failures arrive
        as ServiceUnavailable, whatever `work` raises itself (AuthError) as is."""
        if self._closed:
            raise RuntimeError("this LDAP directory client is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run_in_thread, work)

    async def aclose(self) -> None:
        """Wait for running work, then close every connection."""
        self._closed = True
        await asyncio.to_thread(self._close_all)

    def open_connection(self) -> ldap3.Connection:
        """A new unbound connection, TLS already up when configured."""
        connection = ldap3.Connection(
            self._server,
            client_strategy=ldap3.SYNC,
            auto_bind=ldap3.AUTO_BIND_NONE,
            receive_timeout=self._receive_timeout_s,
            raise_exceptions=False,
            # Following a referral would send our credentials to another server.
            auto_referrals=False,
            read_only=True,
        )
        try:
            connection.open(read_server_info=False)
            if self._config.start_tls:
                connection.start_tls(read_server_info=False)
        except LDAPStartTLSError as exc:
            _close(connection)
            raise self._tls_failed(exc) from exc
        except LDAPSocketOpenError as exc:
            _close(connection)
            if self._config.uses_tls and "ssl" in str(exc).lower():
                raise self._tls_failed(exc) from exc
            raise
        return connection

    def open_service_connection(self) -> ldap3.Connection:
        """A connection bound as the service account, or anonymous when none is configured."""
        connection = self.open_connection()
        if self._config.bind_dn is None:
            return connection
        connection.authentication = ldap3.SIMPLE
        connection.user = self._config.bind_dn
        connection.password = self._config.bind_password
        try:
            connection.bind(read_server_info=False)
        except BaseException:
            # Not yet anybody's to close: a bind that times out leaves ldap3's socket open.
            _close(connection)
            raise
        if connection.result["result"] != _SUCCESS:
            log.error(
                "the LDAP service account %r was refused: %s",
                self._config.bind_dn,
                connection.result.get("description"),
            )
            _close(connection)
            raise ServiceUnavailable(
                "The gateway could not sign in to the user directory.",
                code="directory_unavailable",
            )
        return connection

    @property
    def start_tls(self) -> bool:
        """Whether connections are upgraded with StartTLS."""
        return self._config.start_tls

    def reader(self, connection: ldap3.Connection) -> DirectoryReader:
        """A reader over `connection` with the configured time limit."""
        return DirectoryReader(connection, self._receive_timeout_s)

    def _run_in_thread(self, work: Callable[[LdapSession], T]) -> T:
        session = self._session()
        if session.has_connections:
            try:
                return work(session)
            except _CONNECTION_LOST as exc:
                # Idle connections get dropped by servers and firewalls: normal, try fresh.
                log.info("LDAP connection lost (%s); retrying on a new one", exc)
                session.reset()
            except LDAPException as exc:
                session.reset()
                raise _unavailable(exc) from exc
        try:
            return work(session)
        except (LDAPException, OSError) as exc:
            session.reset()
            raise _unavailable(exc) from exc

    def _session(self) -> LdapSession:
        session: LdapSession | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = LdapSession(self)
            with self._lock:
                self._sessions.append(session)
        return session

    def _close_all(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.reset()

    def _tls_failed(self, exc: Exception) -> ServiceUnavailable:
        log.error("TLS with the LDAP server %s failed: %s", self._config.url, exc)
        return ServiceUnavailable(
            "TLS with the user directory failed (no TLS offered, or a certificate the gateway "
            "does not trust).",
            code="directory_tls_failed",
        )


class _VerifiedTls(ldap3.Tls):
    """ldap3's Tls, but verified by Python's own ssl module with one context for all.

    ldap3 turns the context's hostname check off and matches names itself, with a fallback
    that on Python 3.12+ does not know IP addresses in certificates; and it builds (and reads
    the CA file into) a new context for every connection.
    """

    def __init__(self, ca_file: str | None) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self._context = ssl.create_default_context(cafile=ca_file)

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self._context.wrap_socket(
            connection.socket,
            server_hostname=connection.server.host,
            do_handshake_on_connect=do_handshake,
        )


def _close(connection: ldap3.Connection | None) -> None:
    if connection is None:
        return
    try:
        connection.unbind()
    except LDAPException as exc:
        log.debug("closing a broken LDAP connection: %s", exc)
    # ldap3 marks a connection closed when a read fails, and its unbind then leaves the
    # socket open (or fails to send before closing it): close the socket ourselves.
    if connection.socket is not None:
        connection.socket.close()


def _unavailable(exc: Exception) -> ServiceUnavailable:
    log.warning("LDAP directory unavailable: %s: %s", type(exc).__name__, exc)
    return ServiceUnavailable("The user directory is unavailable.", code="directory_unavailable")
