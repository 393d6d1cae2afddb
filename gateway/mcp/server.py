"""The SDK's low-level MCP `Server` of one virtual server: each request handler finds the
request's exchange (the caller, their grant) on the HTTP request the SDK hands it and asks the
`VirtualMcpServer`; a tool call's progress notifications are relayed on the call's own stream.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from gateway.mcp.virtual import VirtualMcpServer

if TYPE_CHECKING:
    from gateway.api.exchange import Exchange

log = logging.getLogger(__name__)


class Listen(Protocol):
    """Serves one `subscriptions/listen` request: its stream, until it closes."""

    async def __call__(
        self, ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult: ...


class Follow(Protocol):
    """Records a session's `resources/subscribe` (or, `subscribe=False`, its end)."""

    async def __call__(
        self, ctx: ServerRequestContext[Any], uri: str, *, subscribe: bool
    ) -> types.EmptyResult: ...


def mcp_server(virtual: VirtualMcpServer, follow: Follow, listen: Listen) -> Server[Any]:
    """The low-level MCP server of one virtual server: each handler finds the request's
    exchange (the caller, their grant) on the HTTP request the SDK hands it. `listen` serves
    `subscriptions/listen`, which makes the SDK advertise change notifications and resource
    subscriptions to 2026 clients."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=await virtual.list_tools(exchange_of(ctx)))

    async def call_tool(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        relay = _ProgressRelay(ctx)
        try:
            return await virtual.call_tool(exchange_of(ctx), params.name, params.arguments, relay)
        finally:
            await relay.drained()

    async def list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=await virtual.list_resources(exchange_of(ctx)))

    async def read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        return await virtual.read_resource(exchange_of(ctx), str(params.uri))

    async def list_prompts(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=await virtual.list_prompts(exchange_of(ctx)))

    async def get_prompt(
        ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        return await virtual.get_prompt(exchange_of(ctx), params.name, params.arguments)

    async def subscribe(
        ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams
    ) -> types.EmptyResult:
        return await follow(ctx, str(params.uri), subscribe=True)

    async def unsubscribe(
        ctx: ServerRequestContext[Any], params: types.UnsubscribeRequestParams
    ) -> types.EmptyResult:
        return await follow(ctx, str(params.uri), subscribe=False)

    return _GatewayServer(
        f"raygate-{virtual.name}",
        instructions=virtual.config.instructions,
        get_tool_input_schema=virtual.input_schema,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
        on_subscribe_resource=subscribe,
        on_unsubscribe_resource=unsubscribe,
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
        on_subscriptions_listen=listen,
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


def exchange_of(ctx: ServerRequestContext[Any]) -> Exchange:
    """The request's exchange, on the HTTP request the SDK hands a handler."""
    state = getattr(ctx.request, "state", None)
    exchange: Exchange | None = getattr(state, "exchange", None)
    if exchange is None or exchange.principal is None:
        raise MCPError(INTERNAL_ERROR, "The request reached the MCP server unauthenticated.")
    return exchange


class _GatewayServer(Server[Any]):
    """The SDK's server, whose 2025 handshake advertises the change notifications the GET
    stream relays (`listChanged` for tools, prompts and resources): the stateless session
    manager builds the `initialize` answer with default options, which advertise none. 2026
    clients' capabilities follow from `subscriptions/listen` being served, as before."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        relayed = NotificationOptions(
            prompts_changed=True, resources_changed=True, tools_changed=True
        )
        return super().create_initialization_options(
            notification_options or relayed, experimental_capabilities, extensions
        )
