"""`/mcp/{virtual_server}`: each virtual server as an MCP Streamable HTTP endpoint in the
gateway's FastAPI app: POSTs served by the SDK's low-level `Server` and its session manager,
GET and DELETE by the gateway itself.

The caller is authenticated the gateway's usual way (`Admission.caller`: API key, OIDC, ...)
before the MCP layer sees the request (401 in the gateway's error shape otherwise). The
session manager runs **stateless**: every POST is served on its own, so any ingress replica
can answer any request and no stickiness is needed; the gateway keeps its own sessions to the
upstreams (`gateway.mcp.upstream`). Progress notifications of an upstream tool call are
relayed on the POST's own SSE stream.

Sessions (2025 protocol versions) are the gateway's, valid on every replica
(`gateway.mcp.sessions`): an `initialize` answered with success gets an `Mcp-Session-Id`; a
request carrying an id that is not the caller's on this virtual server, expired or ended is
answered 404 (the client re-initialises); `DELETE` with a valid id ends the session. A request
without an id is served as before (the 2026 protocol has none). `GET` with a valid id opens
the session's standalone SSE stream (`gateway.mcp.stream`) of the upstreams' change
notifications (`gateway.mcp.notifications`); without one it is 405. A 2026 client's stream is
the response to its `subscriptions/listen` POST (`gateway.mcp.listen`), fed by the same hub.

Every HTTP request here is one audit record, written when its response has been sent (after
the tool call, however long it ran; when a GET or listen stream closes), with what the virtual
server noted on the exchange.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_REQUEST
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from gateway.audit.record import PolicyDecision
from gateway.errors import GatewayError, NotFound
from gateway.mcp.access import tool_grant
from gateway.mcp.listen import listen_handler
from gateway.mcp.notifications import NotificationHub
from gateway.mcp.server import exchange_of, mcp_server
from gateway.mcp.sessions import McpSession, McpSessions
from gateway.mcp.stream import relay
from gateway.mcp.virtual import VirtualMcpServer

if TYPE_CHECKING:
    from gateway.api.admission import Admission
    from gateway.api.exchange import Exchange
    from gateway.api.response import Responder

log = logging.getLogger(__name__)

PATH = "/mcp/{virtual_server}"
SESSION_HEADER = "mcp-session-id"


class McpEndpoint:
    """The ASGI app behind `/mcp/{virtual_server}`; `aclose` stops its session managers
    (the upstream clients are closed by their owner)."""

    def __init__(
        self,
        servers: dict[str, VirtualMcpServer],
        admission: Admission,
        responder: Responder,
        sessions: McpSessions,
        hub: NotificationHub,
        *,
        max_body_bytes: int,
        keepalive_s: float = 15.0,
    ) -> None:
        self._admission = admission
        self._responder = responder
        self._servers = servers
        self._sessions = sessions
        self._hub = hub
        self._max_body_bytes = max_body_bytes
        self._keepalive_s = keepalive_s
        self._managers = {
            name: StreamableHTTPSessionManager(
                mcp_server(virtual, self._follow, listen_handler(virtual, hub)),
                stateless=True,
                max_request_body_size=max_body_bytes,
            )
            for name, virtual in servers.items()
        }
        self._running: asyncio.Task[None] | None = None
        self._started = asyncio.Event()
        self._stop = asyncio.Event()
        self._start_lock = asyncio.Lock()

    def route(self) -> Route:
        """The route to add to the app."""
        return Route(PATH, endpoint=self, methods=["GET", "POST", "DELETE"])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        name = scope["path_params"]["virtual_server"]
        manager = self._managers.get(name)
        if manager is None:
            raise NotFound(f"There is no MCP server {name!r}.")
        await self._admission.caller(request)  # AuthError: a 401 in the gateway's shape
        exchange: Exchange = request.state.exchange
        exchange.streaming = True  # the record is written below, once the response is sent
        exchange.template = PATH  # the metrics' route label: a Starlette route is not in scope
        await self._ensure_running()
        status: list[int] = []

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
            await send(message)

        try:
            session_id = request.headers.get(SESSION_HEADER)
            session = None
            if session_id is not None:
                assert exchange.principal is not None
                session = await self._sessions.check(session_id, exchange.principal.user_id, name)
                if session is None:
                    exchange.error_code = "session_not_found"
                    _decide(exchange, "mcp.session", "denied", "unknown, expired or ended")
                    await _jsonrpc_error(observed, 404, "Session not found")
                    return
            request.state.mcp_session = session  # for resources/subscribe
            if scope["method"] == "POST":
                await self._post(manager, exchange, name, session, scope, receive, observed)
            elif session is None:  # GET, DELETE: only of a session
                exchange.error_code = "session_required"
                await _jsonrpc_error(
                    observed, 405, "Method Not Allowed: initialize first (no Mcp-Session-Id)"
                )
            elif scope["method"] == "GET":
                await self._stream(exchange, request, session, receive, observed)
            else:
                await self._sessions.end(session)
                self._hub.end_session(session.id)
                _decide(exchange, "mcp.session", "ended")
                await observed({"type": "http.response.start", "status": 200, "headers": []})
                await observed({"type": "http.response.body", "body": b""})
        except GatewayError as failed:  # the session register is down: the app answers it
            exchange.error_code = failed.code
            if not status:
                status.append(failed.status)
            raise
        finally:
            exchange.status = status[0] if status else 499
            await asyncio.shield(self._record(exchange))

    async def _post(
        self,
        manager: StreamableHTTPSessionManager,
        exchange: Exchange,
        name: str,
        session: McpSession | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """The SDK serves the POST; an `initialize` without a session id is answered with a
        new one."""
        if session is not None:
            await manager.handle_request(scope, receive, send)
            return
        body, receive = await _peek(receive, self._max_body_bytes)
        if not _is_initialize(body):
            await manager.handle_request(scope, receive, send)
            return
        assert exchange.principal is not None
        issued = await self._sessions.issue(exchange.principal.user_id, name)

        async def with_session_id(message: Message) -> None:
            if message["type"] == "http.response.start" and int(message["status"]) < 400:
                headers = [*message.get("headers", []), (b"mcp-session-id", issued.id.encode())]
                message = {**message, "headers": headers}
                _decide(exchange, "mcp.session", "issued", f"ttl_s={self._sessions.ttl_s:g}")
            await send(message)

        await manager.handle_request(scope, receive, with_session_id)

    async def _stream(
        self,
        exchange: Exchange,
        request: Request,
        session: McpSession,
        receive: Receive,
        send: Send,
    ) -> None:
        """The session's standalone SSE stream of change notifications."""
        if "text/event-stream" not in request.headers.get("accept", ""):
            exchange.error_code = "not_acceptable"
            await _jsonrpc_error(send, 406, "Not Acceptable: accept text/event-stream")
            return
        assert exchange.principal is not None
        virtual = self._servers[session.virtual_server]
        grant = tool_grant(exchange.principal, virtual.config.access)
        servers = frozenset(s for s in virtual.config.servers if grant.allows_server(s))
        listener = self._hub.listen(session.virtual_server, session.id, servers)
        user_id = exchange.principal.user_id

        async def still_valid() -> bool:
            try:
                again = await self._sessions.check(session.id, user_id, session.virtual_server)
                if again is None:
                    return False
                # A subscription made on another replica reaches this stream from the database.
                self._hub.follow(session.id, await self._sessions.subscriptions(session))
            except GatewayError:  # the register is down: end it (the client reopens it)
                return False
            return True

        relayed = 0
        try:
            self._hub.follow(session.id, await self._sessions.subscriptions(session))
            relayed = await relay(
                listener,
                receive,
                send,
                keepalive_s=self._keepalive_s,
                still_valid=still_valid,
                headers=[(b"mcp-session-id", session.id.encode())],
            )
        finally:
            self._hub.leave(listener)
            detail = f"relayed={relayed} servers={','.join(sorted(servers))}"
            if listener.overflowed:
                detail += " ended=overflow"
            _decide(exchange, "mcp.notifications", "allowed", detail)

    async def _follow(
        self, ctx: ServerRequestContext[Any], uri: str, *, subscribe: bool
    ) -> types.EmptyResult:
        """`resources/subscribe` or `resources/unsubscribe` of the request's session: kept in
        the database (the session's GET stream may be on another replica) and passed to the
        streams on this one at once."""
        exchange = exchange_of(ctx)
        session: McpSession | None = getattr(
            getattr(ctx.request, "state", None), "mcp_session", None
        )
        method = "resources/subscribe" if subscribe else "resources/unsubscribe"
        if session is None:
            exchange.error_code = "session_required"
            raise MCPError(INVALID_REQUEST, f"{method} needs a session: initialize first.")
        virtual = self._servers[session.virtual_server]

        async def follow() -> None:
            change = self._sessions.subscribe if subscribe else self._sessions.unsubscribe
            await change(session, uri)
            self._hub.follow(session.id, await self._sessions.subscriptions(session))

        try:
            await virtual.follow_resource(exchange, method, uri, follow)
        except GatewayError as failed:  # the session register is down: no stack to the client
            raise MCPError(INTERNAL_ERROR, failed.message) from None
        return types.EmptyResult()

    async def _record(self, exchange: Exchange) -> None:
        try:
            await self._responder.account(exchange)
        except Exception:  # the writer logs and counts its own failures; never the client's
            log.exception("MCP request %s: audit record not queued", exchange.request_id)

    async def _ensure_running(self) -> None:
        """Start the session managers on first use, in a task that owns their contexts."""
        if self._started.is_set():
            return
        async with self._start_lock:
            if self._running is None:
                self._running = asyncio.create_task(self._run(), name="mcp-session-managers")
        await self._started.wait()

    async def _run(self) -> None:
        try:
            async with AsyncExitStack() as stack:
                for manager in self._managers.values():
                    await stack.enter_async_context(manager.run())
                self._started.set()
                await self._stop.wait()
        finally:
            self._started.set()  # a manager that failed to start fails requests, never hangs them

    async def aclose(self) -> None:
        """Stop the session managers (at the app's shutdown)."""
        self._stop.set()
        if self._running is not None:
            await asyncio.gather(self._running, return_exceptions=True)


def _decide(exchange: Exchange, rule: str, action: str, detail: str | None = None) -> None:
    exchange.decisions.append(
        PolicyDecision(rule=rule, detector="mcp", action=action, detail=detail)
    )


async def _jsonrpc_error(send: Send, status: int, message: str) -> None:
    """An error the way MCP clients read one: a JSON-RPC error body (no id) at `status`."""
    body = json.dumps(
        {"jsonrpc": "2.0", "id": None, "error": {"code": INVALID_REQUEST, "message": message}}
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _peek(receive: Receive, limit: int) -> tuple[bytes, Receive]:
    """The request body read (at most `limit` + 1 bytes of it), and a `receive` that replays
    it and then goes on with the rest (the SDK answers an oversized body with 413)."""
    messages: list[Message] = []
    size = 0
    while size <= limit:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")

    async def replay() -> Message:
        return messages.pop(0) if messages else await receive()

    return body, replay


def _is_initialize(body: bytes) -> bool:
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("method") == "initialize"
