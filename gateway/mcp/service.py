"""The MCP gateway as the app composes it: the upstream clients, a virtual server over them
for each configured one, and the endpoint that serves them."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.routing import Route

from gateway.accounting.meter import Meter
from gateway.config import GatewayConfig
from gateway.mcp.endpoint import McpEndpoint
from gateway.mcp.notifications import NotificationHub
from gateway.mcp.sessions import McpSessions
from gateway.mcp.upstream import UpstreamClient, upstream_clients
from gateway.mcp.virtual import VirtualMcpServer
from gateway.storage import Database

if TYPE_CHECKING:
    from gateway.api.admission import Admission
    from gateway.api.input_policy import InputPolicy
    from gateway.api.response import Responder


class McpGateway:
    """Everything behind `/mcp/{virtual_server}` in one ingress replica."""

    def __init__(
        self,
        endpoint: McpEndpoint,
        upstreams: dict[str, UpstreamClient],
        hub: NotificationHub,
    ) -> None:
        self.endpoint = endpoint
        self.upstreams = upstreams
        self.hub = hub

    @classmethod
    def from_config(
        cls,
        config: GatewayConfig,
        admission: Admission,
        responder: Responder,
        policy: InputPolicy | None,
        meter: Meter,
        db: Database | None = None,
    ) -> McpGateway | None:
        """None when no virtual server is configured. Nothing is connected yet: upstream
        sessions (and stdio processes) start on first use. `db` keeps the ended client
        sessions (default: the one `storage.url` names)."""
        if not config.mcp.enabled():
            return None
        upstreams = upstream_clients(config.mcp.servers)
        servers = {
            name: VirtualMcpServer(name, virtual, upstreams, policy=policy, meter=meter)
            for name, virtual in config.mcp.virtual_servers.items()
        }
        sessions = McpSessions(
            db or Database(config.storage.url),
            ttl_s=config.mcp.session_ttl_s,
            key=config.mcp.session_key,
        )
        hub = NotificationHub(upstreams)
        endpoint = McpEndpoint(
            servers,
            admission,
            responder,
            sessions,
            hub,
            max_body_bytes=config.limits.max_body_bytes,
            keepalive_s=config.mcp.stream_keepalive_s,
        )
        return cls(endpoint, upstreams, hub)

    def route(self) -> Route:
        """`/mcp/{virtual_server}`."""
        return self.endpoint.route()

    async def aclose(self) -> None:
        """End the GET streams, stop serving, then close every upstream session and stdio
        child process."""
        await self.hub.aclose()
        await self.endpoint.aclose()
        await asyncio.gather(*(u.aclose() for u in self.upstreams.values()))
