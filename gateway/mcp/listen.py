"""`subscriptions/listen` (the 2026-07-28 protocol, SEP-2575): a client's request whose SSE
response is its stream of the upstreams' change events, served on every virtual server.

The wire (the acknowledgment first, each frame stamped with the request's id under `_meta`,
only the event kinds the client asked for, a graceful end with the listen result) is the SDK's
`ListenHandler`, one per request, over a `ListenFeed`: the stream's listener on this replica's
`NotificationHub`, which shares the upstream watches with the 2025 clients' GET streams. What
reaches the feed is already the caller's, as on a GET stream: list-changed events only of the
upstreams the caller's groups may use on this virtual server, and `resources/updated` only of
the gateway URIs (`mcp://server/...`) the stream asked for, translated from the upstream's.

A requested URI the caller may not read (its upstream is not theirs, or it is not a gateway
URI) is left out of the acknowledged filter rather than failing the request: the ack is the
honored subset, as the protocol has it, and nothing tells the caller whether such a resource
exists. The filter is fixed for the stream's life (no session, no shared state), so any replica
can hold any stream.

The request is one audit record, written when its stream closes: an `mcp.notifications`
decision with the number of events relayed, the upstreams followed and the URIs left out.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ListenHandler, ServerEvent
from mcp.shared.subscriptions import event_from_wire, event_matches

from gateway.audit.record import PolicyDecision
from gateway.mcp.access import tool_grant
from gateway.mcp.names import split_resource_uri
from gateway.mcp.notifications import Listener, Notification, NotificationHub
from gateway.mcp.server import Listen, exchange_of
from gateway.mcp.virtual import VirtualMcpServer


@dataclass(eq=False)
class ListenFeed(Listener):
    """A listen stream's listener on the hub, and the `SubscriptionBus` of its `ListenHandler`:
    what the hub offers is passed on at once as typed events (the handler buffers them)."""

    honored: types.SubscriptionFilter = field(default_factory=types.SubscriptionFilter)
    relayed: int = 0  # events within the honored filter, handed to the stream
    ended: Callable[[], None] | None = None  # called when the hub ends its streams
    _sinks: dict[object, Callable[[ServerEvent], None]] = field(default_factory=dict)

    def offer(self, item: Notification | None) -> None:
        """Hand the hub's notification to the stream; None (shutdown) ends it gracefully."""
        if item is None:
            if self.ended is not None:
                self.ended()
            return
        event = event_from_wire(item["method"], item.get("params"))
        if event is None:
            return
        if event_matches(self.honored, self.uris, event):
            self.relayed += 1
        for sink in list(self._sinks.values()):
            sink(event)

    async def publish(self, event: ServerEvent) -> None:
        """Part of the bus protocol; events come from the hub through `offer`."""
        for sink in list(self._sinks.values()):
            sink(event)

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        """Register the handler's sink; the idempotent callable removes it."""
        token = object()
        self._sinks[token] = listener

        def unsubscribe() -> None:
            self._sinks.pop(token, None)

        return unsubscribe


def listen_handler(virtual: VirtualMcpServer, hub: NotificationHub) -> Listen:
    """The `subscriptions/listen` handler of one virtual server (see the module docstring)."""

    async def listen(
        ctx: ServerRequestContext[Any], params: types.SubscriptionsListenRequestParams
    ) -> types.SubscriptionsListenResult:
        exchange = exchange_of(ctx)
        assert exchange.principal is not None  # exchange_of checked it
        grant = tool_grant(exchange.principal, virtual.config.access)
        servers = frozenset(s for s in virtual.config.servers if grant.allows_server(s))
        requested = params.notifications
        readable, refused = _readable(requested.resource_subscriptions or [], servers)
        honored = requested.model_copy(update={"resource_subscriptions": readable or None})
        feed = ListenFeed(virtual.name, f"listen:{uuid.uuid4().hex}", servers, honored=honored)
        feed.uris = frozenset(readable)
        handler = ListenHandler(feed, max_buffered_events=feed.queue.maxsize)
        feed.ended = handler.close
        hub.join(feed)
        try:
            if feed.uris:  # the watches ask their upstreams for these (a watch reopens for it)
                hub.follow(feed.session_id, feed.uris)
            return await handler(ctx, params.model_copy(update={"notifications": honored}))
        finally:
            hub.leave(feed)
            detail = f"listen relayed={feed.relayed} servers={','.join(sorted(servers))}"
            if refused:
                detail += f" refused_uris={refused}"
            exchange.decisions.append(
                PolicyDecision(
                    rule="mcp.notifications", detector="mcp", action="allowed", detail=detail
                )
            )

    return listen


def _readable(uris: list[str], servers: frozenset[str]) -> tuple[list[str], int]:
    """The requested URIs the caller may read (in order, once each), and how many were not."""
    readable: list[str] = []
    refused = 0
    for uri in uris:
        parts = split_resource_uri(uri)
        if parts is None or parts[0] not in servers:
            refused += 1
        elif uri not in readable:
            readable.append(uri)
    return readable, refused
