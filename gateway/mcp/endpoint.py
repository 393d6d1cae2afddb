"""`/mcp/{virtual_server}`: each virtual server as an MCP Streamable HTTP endpoint in the
gateway's FastAPI app, served by the SDK's low-level `Server` and its session manager.

The caller is authenticated the gateway's usual way (`Admission.caller`: API key, OIDC, ...)
before the MCP layer sees the request (401 in the gateway's error shape otherwise). The
session manager runs **stateless**: every POST is served on its own, so any ingress replica
can answer any request and no stickiness is needed; the gateway keeps its own sessions to the
upstreams (`gateway.mcp.upstream`). Progress notifications of an upstream tool call are
relayed on the POST's own SSE stream; notifications not tied to a request (list_changed,
resource updates, log messages outside a call) have no stream to travel on in stateless mode
and are not relayed.

Every HTTP request here is one audit record, written when its response has been sent (after
the tool call, however long it ran), with what the virtual server noted on the exchange.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from gateway.errors import NotFound
from gateway.mcp.virtual import VirtualMcpServer

if TYPE_CHECKING:
    from gateway.api.admission import Admission
    from gateway.api.exchange import Exchange
    from gateway.api.response import Responder

log = logging.getLogger(__name__)

PATH = "/mcp/{virtual_server}"


class McpEndpoint:
    """The ASGI app behind `/mcp/{virtual_server}`; `aclose` stops its session managers
    (the upstream clients are closed by their owner)."""

    def __init__(
        self,
        servers: dict[str, VirtualMcpServer],
        admission: Admission,
        responder: Responder,
        *,
        max_body_bytes: int,
    ) -> None:
        self._admission = admission
        self._responder = responder
        self._managers = {
            name: StreamableHTTPSessionManager(
                _mcp_server(virtual), stateless=True, max_request_body_size=max_body_bytes
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
            await manager.handle_request(scope, receive, observed)
        finally:
            exchange.status = status[0] if status else 499
            await asyncio.shield(self._record(exchange))

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


def _mcp_server(virtual: VirtualMcpServer) -> Server[Any]:
    """The low-level MCP server of one virtual server: each handler finds the request's
    exchange (the caller, their grant) on the HTTP request the SDK hands it."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await virtual.list_tools(_exchange(ctx)))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        relay = _ProgressRelay(ctx)
        try:
            return await virtual.call_tool(_exchange(ctx), params.name, params.arguments, relay)
        finally:
            await relay.drained()

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=await virtual.list_resources(_exchange(ctx)))

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        return await virtual.read_resource(_exchange(ctx), str(params.uri))

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=await virtual.list_prompts(_exchange(ctx)))

    async def get_prompt(
        ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        return await virtual.get_prompt(_exchange(ctx), params.name, params.arguments)

    return Server(
        f"raygate-{virtual.name}",
        instructions=virtual.config.instructions,
        get_tool_input_schema=virtual.input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )


class _ProgressRelay:
    """Passes an upstream's progress notifications on to the caller, in order.

    The SDK runs each progress callback as a task of its own, so the upstream's result can be
    in before the last notification has been sent on: the call waits for `drained` before it
    answers, or that notification would find the caller's stream closed.
    """

    def __init__(self, ctx: ServerRequestContext[Any]) -> None:
        self._ctx = ctx
        self._order = asyncio.Lock()  # FIFO: notifications leave in the order they came
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self._pending += 1  # before any await: counted as soon as the SDK starts the task
        self._idle.clear()
        try:
            async with self._order:
                await self._ctx.session.report_progress(progress, total, message)
        finally:
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()

    async def drained(self, timeout_s: float = 5.0) -> None:
        """Wait (bounded) until every notification received so far has been sent on."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            log.warning("MCP progress notifications still pending after %.0f s", timeout_s)


def _exchange(ctx: ServerRequestContext[Any]) -> Exchange:
    state = getattr(ctx.request, "state", None)
    exchange: Exchange | None = getattr(state, "exchange", None)
    if exchange is None or exchange.principal is None:
        raise MCPError(INTERNAL_ERROR, "The request reached the MCP server unauthenticated.")
    return exchange
