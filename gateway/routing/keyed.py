"""A router that follows the provider keys set at run time (`gateway.providers.keys`).

`KeyedRouter` answers like a `Router` (it is the backend the API calls) and holds one: before
each request it asks its `KeyedConfig` for the current config, and when the keys changed it
builds a new `Router` on that config (a provider whose key arrived is switched on; a rotated
key goes into the new provider's client) and routes from then on with the new one. The old
router keeps the requests it already started and is closed once the longest of them would
have timed out. A rebuild starts breakers, latency averages and health afresh on this replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from gateway.config import GatewayConfig
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    ModelList,
)
from gateway.providers.keys import KeyedConfig
from gateway.routing.breaker import Transition
from gateway.routing.context import RouteContext
from gateway.routing.routed import Routed, RoutedStream
from gateway.routing.router import Router
from gateway.routing.status import RoutingStatus
from gateway.tasks import cancelled

log = logging.getLogger(__name__)


class KeyedRouter:
    """The current `Router` for the current provider keys; `build` makes one for a config."""

    def __init__(self, keyed: KeyedConfig, build: Callable[[GatewayConfig], Router]) -> None:
        self.keyed = keyed
        self._build = build
        self.router = self._initial = build(keyed.current)
        self._listeners: list[Callable[[Transition], None]] = []
        self._retiring: set[asyncio.Task[None]] = set()
        keyed.on_change(self._rebuild)

    async def start(self) -> None:
        """Read the keys now (a replica starts with them) and start the router."""
        await self.keyed.fresh()  # a change builds and starts a new router
        if self.router is self._initial:
            await self.router.start()

    async def aclose(self) -> None:
        """Close the current router and any still retiring."""
        await cancelled(*self._retiring)
        await self.router.aclose()

    def subscribe(self, listener: Callable[[Transition], None]) -> None:
        """Breaker transitions of this router and of every one built after it."""
        self._listeners.append(listener)
        self.router.subscribe(listener)

    async def _rebuild(self, config: GatewayConfig) -> None:
        new = self._build(config)
        for listener in self._listeners:
            new.subscribe(listener)
        await new.start()
        old, self.router = self.router, new
        grace = max((p.timeouts.total for p in config.providers.values()), default=600.0)
        task = asyncio.create_task(self._retire(old, grace))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    @staticmethod
    async def _retire(old: Router, grace_s: float) -> None:
        try:
            await asyncio.sleep(grace_s)  # the requests it started are over by then
        finally:
            await old.aclose()

    async def _current(self) -> Router:
        await self.keyed.fresh()
        return self.router

    # --- the backend surface ------------------------------------------------------------------

    def models(self) -> ModelList:
        return self.router.models()

    def status(self) -> RoutingStatus:
        return self.router.status()

    async def routing_status(self) -> RoutingStatus:
        return (await self._current()).status()

    async def not_ready(self) -> list[str]:
        return await (await self._current()).not_ready()

    async def check_health(self) -> None:
        await self.router.check_health()

    async def chat(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> Routed[ChatCompletion]:
        return await (await self._current()).chat(request, context)

    async def chat_stream(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> RoutedStream[ChatCompletionChunk]:
        return await (await self._current()).chat_stream(request, context)

    async def completion(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> Routed[Completion]:
        return await (await self._current()).completion(request, context)

    async def completion_stream(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> RoutedStream[Completion]:
        return await (await self._current()).completion_stream(request, context)

    async def embeddings(
        self, request: EmbeddingRequest, context: RouteContext | None = None
    ) -> Routed[EmbeddingResponse]:
        return await (await self._current()).embeddings(request, context)
