"""The gateway's own MCP client sessions to one upstream server, kept open across calls.

A session is the SDK's `Client` in `auto` mode: the current protocol (one HTTP round trip per
call, no per-session state upstream) where the upstream speaks it, else the initialize
handshake of the 2025 protocol versions.

An HTTP upstream gets one session per ingress replica, or, when it is sent the caller's
identity (`forward_identity`), one per caller (at most `max_sessions`, the least recently used
closed first): identity travels in HTTP headers fixed for a session. A stdio upstream is a
child process of this replica, started on first use; `aclose` (the app's shutdown) stops it.

Each session lives in a task of its own (the SDK's transports are structured-concurrency
contexts that must be left by the task that entered them). A session whose transport ended
(the process died, the server forgot it) is replaced on next use; every operation is bounded
by the server's `timeout_s`. Failures are `UpstreamFailure`, never a bare transport error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any, TypeVar

import mcp_types as types
from mcp import Client, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from gateway.identity.principal import Principal
from gateway.mcp.config import UpstreamServer
from gateway.mcp.credentials import BearerAuth, upstream_auth
from gateway.tasks import cancelled

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_PAGES = 50  # a paginated listing that never ends still ends here
IdentityKey = tuple[tuple[str, str], ...]  # the identity headers a session was opened with


class UpstreamFailure(Exception):
    """An upstream did not answer: `code` is `upstream_timeout` or `upstream_error`."""

    def __init__(self, server: str, message: str, *, code: str = "upstream_error") -> None:
        super().__init__(f"MCP server {server!r}: {message}")
        self.server = server
        self.code = code


class _HeldSession:
    """One initialised `Client`, held open by a task until `close`."""

    def __init__(self, open_transport: Callable[[AsyncExitStack], Awaitable[Any]]) -> None:
        self._open_transport = open_transport
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._session: Client | None = None
        self._failure: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done() and self._failure is None

    async def start(self, timeout_s: float) -> Client:
        self._task = asyncio.create_task(self._hold(), name="mcp-upstream-session")
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except TimeoutError:
            await self.close()
            raise
        if self._failure is not None or self._session is None:
            await self.close()
            raise self._failure or RuntimeError("the session ended before it was ready")
        return self._session

    async def _hold(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                transport = await self._open_transport(stack)
                # `auto`: the current protocol where the upstream speaks it (one round trip
                # per call), else the initialize handshake. No response cache: the listings
                # are the upstream's own, filtered per caller.
                session = await stack.enter_async_context(Client(transport, cache=None))
                self._session = session
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # reported to whoever waits for the session
            self._failure = exc
        finally:
            self._session = None
            self._ready.set()

    async def close(self) -> None:
        self._stop.set()
        task = self._task
        if task is None or task.done():
            return
        try:
            async with asyncio.timeout(10.0):
                await asyncio.shield(task)
        except TimeoutError:  # a transport that does not wind down: cancelled
            await cancelled(task)


class UpstreamClient:
    """The gateway's MCP client of one configured upstream server."""

    def __init__(self, name: str, config: UpstreamServer) -> None:
        self.name = name
        self.config = config
        self._auth: BearerAuth | None = upstream_auth(config.auth)
        self._sessions: OrderedDict[IdentityKey, _HeldSession] = OrderedDict()
        self._opening: dict[IdentityKey, asyncio.Lock] = {}
        self._closed = False

    async def list_tools(self, caller: Principal) -> list[types.Tool]:
        async def page(s: Client, cursor: str | None) -> types.ListToolsResult:
            return await s.list_tools(cursor=cursor)

        return [t for r in await self._pages(caller, page) for t in r.tools]

    async def list_resources(self, caller: Principal) -> list[types.Resource]:
        async def page(s: Client, cursor: str | None) -> types.ListResourcesResult:
            return await s.list_resources(cursor=cursor)

        return [r for res in await self._pages(caller, page) for r in res.resources]

    async def list_prompts(self, caller: Principal) -> list[types.Prompt]:
        async def page(s: Client, cursor: str | None) -> types.ListPromptsResult:
            return await s.list_prompts(cursor=cursor)

        return [p for res in await self._pages(caller, page) for p in res.prompts]

    async def read_resource(self, caller: Principal, uri: str) -> types.ReadResourceResult:
        return await self._run(caller, lambda s: s.read_resource(uri), retry=True)

    async def get_prompt(
        self, caller: Principal, name: str, arguments: dict[str, str] | None
    ) -> types.GetPromptResult:
        return await self._run(caller, lambda s: s.get_prompt(name, arguments), retry=True)

    async def call_tool(
        self,
        caller: Principal,
        name: str,
        arguments: dict[str, Any] | None,
        progress: ProgressFnT | None = None,
    ) -> types.CallToolResult:
        """The upstream's result (a tool error is a result with `is_error`); UpstreamFailure
        when it does not answer. Not retried: a tool call may not be idempotent."""

        async def call(s: Client) -> types.CallToolResult:
            return await s.call_tool(name, arguments, progress_callback=progress)

        return await self._run(caller, call, retry=False)

    async def aclose(self) -> None:
        """Close every session (and so stop a stdio child process)."""
        self._closed = True
        held = list(self._sessions.values())
        self._sessions.clear()
        await asyncio.gather(*(h.close() for h in held))

    async def _pages(
        self, caller: Principal, page: Callable[[Client, str | None], Awaitable[_T]]
    ) -> list[_T]:
        async def walk(session: Client) -> list[_T]:
            results: list[_T] = []
            cursor: str | None = None
            for _ in range(_MAX_PAGES):
                result = await page(session, cursor)
                results.append(result)
                cursor = getattr(result, "next_cursor", None)
                if not cursor:
                    break
            return results

        return await self._run(caller, walk, retry=True)

    async def _run(
        self,
        caller: Principal,
        operation: Callable[[Client], Awaitable[_T]],
        *,
        retry: bool,
    ) -> _T:
        key = self._identity_key(caller)
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self.config.timeout_s):
                    session = await self._session(key)
                    return await operation(session)
            except TimeoutError as exc:
                raise UpstreamFailure(
                    self.name,
                    f"no answer within {self.config.timeout_s:g} s",
                    code="upstream_timeout",
                ) from exc
            except MCPError as exc:  # a JSON-RPC error: the upstream's, or a closed connection
                lost = self._session_lost(key)
                if lost:
                    await self._discard(key)
                if not lost or not retry or attempt == 2:
                    raise UpstreamFailure(self.name, exc.message) from exc
            except Exception as exc:  # the transport failed: this session is done for
                await self._discard(key)
                if not retry or attempt == 2:
                    raise UpstreamFailure(self.name, f"the connection failed ({exc!r})") from exc
            log.info("MCP upstream %s: session lost, reopening", self.name)
        raise AssertionError("unreachable")

    def _session_lost(self, key: IdentityKey) -> bool:
        held = self._sessions.get(key)
        return held is None or not held.alive

    async def _discard(self, key: IdentityKey) -> None:
        held = self._sessions.pop(key, None)
        if held is not None:
            await held.close()

    async def _session(self, key: IdentityKey) -> Client:
        if self._closed:
            raise UpstreamFailure(self.name, "the gateway is shutting down")
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:
            held = self._sessions.get(key)
            if held is not None and held.alive and held._session is not None:
                self._sessions.move_to_end(key)
                return held._session
            await self._discard(key)
            held = _HeldSession(lambda stack: self._open_transport(stack, key))
            session = await held.start(self.config.connect_timeout_s)
            self._sessions[key] = held
            while len(self._sessions) > self.config.max_sessions:
                _, oldest = self._sessions.popitem(last=False)
                asyncio.create_task(oldest.close())  # noqa: RUF006 - it ends on its own
            return session

    async def open_transport(self, stack: AsyncExitStack) -> Any:
        """A transport of the gateway's own (no caller's identity), for a session held
        elsewhere (`gateway.mcp.notifications` watches the upstream's change events on one)."""
        return await self._open_transport(stack, ())

    async def _open_transport(self, stack: AsyncExitStack, key: IdentityKey) -> Any:
        """The transport to the upstream, for a `Client` to enter (the HTTP client it uses
        is entered on `stack`)."""
        config = self.config
        if config.transport == "stdio":
            assert config.command is not None
            params = StdioServerParameters(
                command=config.command, args=config.args, env=config.env or None, cwd=config.cwd
            )
            return stdio_client(params)
        assert config.url is not None
        http = create_mcp_http_client(headers={**config.headers, **dict(key)}, auth=self._auth)
        await stack.enter_async_context(http)
        return streamable_http_client(config.url, http_client=http)

    def _identity_key(self, caller: Principal) -> IdentityKey:
        forward = self.config.forward_identity
        if not forward.enabled:
            return ()
        headers = [(forward.user_header, caller.user_id)]
        if caller.email:
            headers.append((forward.email_header, caller.email))
        if caller.groups:
            headers.append((forward.groups_header, ",".join(caller.groups)))
        return tuple(headers)


def upstream_clients(servers: dict[str, UpstreamServer]) -> dict[str, UpstreamClient]:
    """One client per configured upstream server."""
    return {name: UpstreamClient(name, config) for name, config in servers.items()}
