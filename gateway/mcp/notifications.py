"""Upstream notifications not tied to a request, fanned out to the clients' GET streams (and
2026 clients' listen streams, `gateway.mcp.listen`) held on this ingress replica.

Each replica watches an upstream on a session of its own, opened when the first GET stream of
a virtual server over it opens here and kept until shutdown (reopened after a failure, see
below): over the 2026 protocol it is a `subscriptions/listen` stream asking for the three
list-changed events and the subscribed resources' updates; over a 2025 protocol version the
SDK's own GET stream, with a `resources/subscribe` per subscribed URI, whose notifications
reach the session's message handler. An upstream sends server-wide events to every session
that listens, so every replica learns of a change by itself and no event has to cross
replicas: each one passes it to the GET streams it holds. An upstream that keeps failing is
retried less and less often: `retry_s`, doubled per failure in a row, up to `MAX_RETRY_S`.

Relayed: `notifications/tools/list_changed`, `.../prompts/list_changed` and
`.../resources/list_changed`, each to the streams of callers whose groups may use that upstream
on that virtual server (`ToolGrant.allows_server`, resolved when the stream opened; they carry
no names, so nothing needs namespacing); and `notifications/resources/updated`, its URI turned
into the gateway's (`mcp://server/...`), to the streams of the sessions that subscribed to it.
A session's subscriptions are kept in the database (`McpSessions`), since the POST that
subscribes may reach another replica than the one holding its GET stream: that stream reads
them when it opens and at every keep-alive, and at once when the subscribe reaches its own
replica. A listen stream's filter is fixed when it opens, so a change of the URIs a replica
needs from an upstream reopens that upstream's watch (an update in that moment is missed).

Not relayed: log messages, and server-to-client requests (sampling, elicitation, roots): a
client's answer would come back as a new POST, which may reach another replica than the one
holding the upstream session that asked.

The watch session carries the gateway's credential, never a caller's identity (a change event
is the server's, not a caller's). A stream whose client reads too slowly to keep up is ended
(its queue overflowed); the client reopens it and re-lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import (
    PromptsListChanged,
    ResourcesListChanged,
    ResourceUpdated,
    ServerEvent,
    ToolsListChanged,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.mcp.names import resource_uri, split_resource_uri
from gateway.mcp.upstream import UpstreamClient
from gateway.tasks import cancelled

log = logging.getLogger(__name__)

_METHODS: dict[type[Any], str] = {
    ToolsListChanged: "notifications/tools/list_changed",
    PromptsListChanged: "notifications/prompts/list_changed",
    ResourcesListChanged: "notifications/resources/list_changed",
}
_UPDATED = "notifications/resources/updated"
_LEGACY_EVENTS: dict[type[Any], ServerEvent] = {
    types.ToolListChangedNotification: ToolsListChanged(),
    types.PromptListChangedNotification: PromptsListChanged(),
    types.ResourceListChangedNotification: ResourcesListChanged(),
}
Notification = dict[str, Any]  # a JSON-RPC notification as sent on a GET stream


@dataclass(eq=False)
class Listener:
    """One GET stream held on this replica: what it may receive, and its queue (None ends it)."""

    virtual_server: str
    session_id: str
    servers: frozenset[str]  # the upstreams the caller may use on that virtual server
    queue: asyncio.Queue[Notification | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=256)
    )
    uris: frozenset[str] = frozenset()  # gateway URIs the session subscribed to
    overflowed: bool = False

    def offer(self, item: Notification | None) -> None:
        """Queue `item`; a full queue ends the stream instead (the client re-lists)."""
        if self.overflowed:
            return
        if self.queue.full():
            self.overflowed = True
            self.queue.get_nowait()  # room for the end marker
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(item)


MAX_RETRY_S = 300.0


def retry_delay(retry_s: float, failures: int) -> float:
    """Seconds before reopening a watch after `failures` failures in a row (0: it was dropped
    after listening): `retry_s`, doubled per further failure, at most `MAX_RETRY_S`. An
    upstream down for a day is then asked about 300 times, not 17,000."""
    return min(MAX_RETRY_S, retry_s * 2 ** max(0, failures - 1))


class NotificationHub:
    """The GET streams held on this replica and the upstream watches that feed them."""

    def __init__(self, upstreams: dict[str, UpstreamClient], *, retry_s: float = 5.0) -> None:
        self._upstreams = upstreams
        self._retry_s = retry_s
        self._listeners: set[Listener] = set()
        self._watches: dict[str, UpstreamWatch] = {}

    def listen(self, virtual_server: str, session_id: str, servers: frozenset[str]) -> Listener:
        """A new stream's listener, its upstreams watched from now on."""
        listener = Listener(virtual_server, session_id, servers)
        self.join(listener)
        return listener

    def join(self, listener: Listener) -> None:
        """Add a listener built by its stream (a 2026 client's listen stream, see
        `gateway.mcp.listen`); its upstreams are watched from now on."""
        self._listeners.add(listener)
        for server in listener.servers:
            if server not in self._watches and server in self._upstreams:
                watch = UpstreamWatch(self._upstreams[server], self.publish, retry_s=self._retry_s)
                self._watches[server] = watch
                watch.start()

    def leave(self, listener: Listener) -> None:
        """The stream closed."""
        self._listeners.discard(listener)

    def end_session(self, session_id: str) -> None:
        """End every stream of a session that ended (DELETE) on this replica."""
        for listener in self._listeners:
            if listener.session_id == session_id:
                listener.offer(None)

    def follow(self, session_id: str, uris: frozenset[str]) -> None:
        """The gateway URIs session `session_id` is subscribed to now: its streams here
        receive their updates, and each upstream is asked for those of its own."""
        for listener in self._listeners:
            if listener.session_id == session_id:
                listener.uris = uris
        wanted: dict[str, set[str]] = {server: set() for server in self._watches}
        for listener in self._listeners:
            for uri in listener.uris:
                parts = split_resource_uri(uri)
                if parts is not None and parts[0] in listener.servers and parts[0] in wanted:
                    wanted[parts[0]].add(parts[1])
        for server, upstream_uris in wanted.items():
            self._watches[server].follow(frozenset(upstream_uris))

    def watch(self, server: str) -> UpstreamWatch | None:
        """The watch of upstream `server`, once a stream asked for it."""
        return self._watches.get(server)

    async def publish(self, server: str, event: ServerEvent) -> None:
        """Pass `event` of upstream `server` to every stream that may see it."""
        if isinstance(event, ResourceUpdated):
            uri = resource_uri(server, event.uri)
            updated = {"jsonrpc": "2.0", "method": _UPDATED, "params": {"uri": uri}}
            for listener in list(self._listeners):
                if server in listener.servers and uri in listener.uris:
                    listener.offer(updated)
            return
        method = _METHODS.get(type(event))
        if method is None:
            return
        for listener in list(self._listeners):
            if server in listener.servers:
                listener.offer({"jsonrpc": "2.0", "method": method})

    async def aclose(self) -> None:
        """End every stream and stop every watch (at shutdown)."""
        for listener in self._listeners:
            listener.offer(None)
        watches = list(self._watches.values())
        self._watches.clear()
        await asyncio.gather(*(w.aclose() for w in watches))


class UpstreamWatch:
    """A session of this replica's to one upstream that listens for its change events."""

    def __init__(
        self,
        upstream: UpstreamClient,
        publish: Callable[[str, ServerEvent], Awaitable[None]],
        *,
        retry_s: float,
    ) -> None:
        self._upstream = upstream
        self._publish = publish
        self._retry_s = retry_s
        self._stop = asyncio.Event()
        self._changed = asyncio.Event()
        self._uris: frozenset[str] = frozenset()
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()  # set while the upstream is being listened to

    def follow(self, uris: frozenset[str]) -> None:
        """Listen for updates of these upstream URIs (and no others) from now on: the watch
        session is reopened with them (a listen stream's filter is fixed when it opens)."""
        if uris != self._uris:
            self._uris = uris
            self._changed.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mcp-watch-{self._upstream.name}")

    async def aclose(self) -> None:
        self._stop.set()
        await cancelled(self._task)

    async def _run(self) -> None:
        failures = 0  # in a row: the first is a warning, the rest debug
        while not self._stop.is_set():
            self._changed.clear()
            watching = asyncio.create_task(self._watch(self._uris))
            changed = asyncio.create_task(self._changed.wait())
            try:
                await asyncio.wait({watching, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watching, changed):
                    task.cancel()
                results = await asyncio.gather(watching, changed, return_exceptions=True)
            if self.listening.is_set():  # it was listening: a drop now is a first failure
                failures = 0
            self.listening.clear()
            if self._changed.is_set():
                continue  # the subscriptions changed: reopen at once with the new ones
            if isinstance(results[0], Exception):  # the upstream is down or dropped us
                failures += 1
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(level, "MCP upstream %s: events not watched: %r", self._name, results[0])
            with contextlib.suppress(TimeoutError):  # back off, unless stopping
                async with asyncio.timeout(retry_delay(self._retry_s, failures)):
                    await self._stop.wait()

    @property
    def _name(self) -> str:
        return self._upstream.name

    async def _watch(self, uris: frozenset[str]) -> None:
        async with AsyncExitStack() as stack:
            async with asyncio.timeout(self._upstream.config.connect_timeout_s):
                transport = await self._upstream.open_transport(stack)
                client = await stack.enter_async_context(
                    Client(transport, cache=None, message_handler=self._on_message)
                )
            if client.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                # 2025: the SDK opened the GET stream; events arrive in `_on_message`.
                for uri in sorted(uris):
                    await client.session.subscribe_resource(uri)
                self.listening.set()
                await self._stop.wait()
                return
            listening = client.listen(
                tools_list_changed=True,
                prompts_list_changed=True,
                resources_list_changed=True,
                resource_subscriptions=sorted(uris),
            )
            async with asyncio.timeout(self._upstream.config.connect_timeout_s):
                subscription = await stack.enter_async_context(listening)
            self.listening.set()
            async for event in subscription:
                await self._publish(self._name, event)

    async def _on_message(self, message: Any) -> None:
        if isinstance(message, Exception):
            return
        event = _LEGACY_EVENTS.get(type(message))
        if isinstance(message, types.ResourceUpdatedNotification):
            event = ResourceUpdated(uri=str(message.params.uri))
        if event is not None:
            await self._publish(self._name, event)
