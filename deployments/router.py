"""The router stage as a replica runs it (`RoutingReplica`), and the Router deployment that
serves it over handles when `serve.colocate_router` is off. Colocated (the default), each
Ingress replica runs its own `RoutingReplica` and calls providers in process: one Serve hop
fewer per request and per streamed chunk."""

from __future__ import annotations

from collections.abc import AsyncIterator

from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.engines import ServeEngines
from gateway.config import GatewayConfig
from gateway.observability.metrics import MetricFactory, instruments, serve_metric
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.providers.base import Provider
from gateway.providers.keys import KeyedConfig, ProviderKeyStore
from gateway.providers.local import LocalProvider
from gateway.providers.local_config import LOCAL_PROVIDER
from gateway.providers.registry import build_provider
from gateway.routing.board import StatusBoard, StatusPublisher
from gateway.routing.breaker import BreakerState, Transition
from gateway.routing.context import RouteContext
from gateway.routing.keyed import KeyedRouter
from gateway.routing.routed import in_band
from gateway.routing.router import Route, Routed, Router
from gateway.routing.status import RoutingStatus
from gateway.storage import Database
from local_models.deployment import deployment_name

# Breaker state as a number Prometheus can graph and alert on.
_STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class _BreakerGauges:
    """The router's breakers in Prometheus (`gateway.observability.metrics`): the state of each
    target (0 closed, 1 half-open, 2 open) and a count of its trips. Each replica reports its
    own breakers."""

    def __init__(self, status: RoutingStatus, factory: MetricFactory) -> None:
        metrics = instruments(factory, ["raygate_breaker_state", "raygate_breaker_trips"])
        self._state = metrics["raygate_breaker_state"]
        self._trips = metrics["raygate_breaker_trips"]
        for target in status.targets:
            self._state.set(_STATE_VALUE[target.breaker], tags={"target": target.target})

    def __call__(self, transition: Transition) -> None:
        tags = {"target": transition.target}
        self._state.set(_STATE_VALUE[transition.after], tags=tags)
        if transition.after is BreakerState.OPEN:
            self._trips.inc(tags=tags)


def _providers(
    config: GatewayConfig, local_models: dict[str, DeploymentHandle]
) -> dict[str, Provider]:
    """Every enabled provider, and the local models behind their handles as `local`."""
    providers = {name: build_provider(name, p) for name, p in config.enabled_providers().items()}
    if local_models:
        engines = ServeEngines(
            local_models,
            app=serve.get_replica_context().app_name,
            deployments={name: deployment_name(name) for name in local_models},
            waits={name: config.local_models[name].wait_for_replica_s for name in local_models},
        )
        providers[LOCAL_PROVIDER] = LocalProvider(config.local_models, engines)
    return providers


class RoutingReplica:
    """A `KeyedRouter` over every provider (and the local models' handles), with its breaker
    gauges and its publisher to the status board, started in the calling replica.

    Breakers, health checks and latency averages live in each replica's router, so `status()`
    and the gauges are one replica's view; each replica also publishes its view to the status
    board (`gateway.routing.board`), where the ingress reads them all.
    """

    def __init__(self, config: GatewayConfig, local_models: dict[str, DeploymentHandle]) -> None:
        db = Database(config.storage.url)
        store = ProviderKeyStore.from_config(config, db) if config.storage.data_key_set() else None
        self.router = KeyedRouter(
            KeyedConfig(config, store),
            lambda keyed: Router(keyed, _providers(keyed, local_models)),
        )
        self.router.subscribe(_BreakerGauges(self.router.status(), serve_metric))
        self._publisher = StatusPublisher(
            StatusBoard(db),
            serve.get_replica_context().replica_id.unique_id,
            self.router.status,
            interval_s=config.routing.status_publish_interval_s,
        )
        self.router.subscribe(self._publisher.transition)

    async def start(self) -> None:
        """Health checks and publishing; needs the replica's running loop."""
        await self.router.start()
        self._publisher.start()

    async def aclose(self) -> None:
        await self._publisher.aclose()
        await self.router.aclose()


@serve.deployment(name="Router")
class RouterDeployment:
    """Calls providers for the ingress replicas (`serve.colocate_router: false`); one pooled
    HTTP client per provider per replica."""

    # Serve awaits an async constructor; the health checks need the replica's running loop.
    async def __init__(  # type: ignore[misc]
        self, config: GatewayConfig, local_models: dict[str, DeploymentHandle] | None = None
    ) -> None:
        self._replica = RoutingReplica(config, local_models or {})
        self._router = self._replica.router
        await self._replica.start()

    async def chat(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> Routed[ChatCompletion]:
        return await self._router.chat(request, context)

    async def chat_stream(
        self, request: ChatCompletionRequest, context: RouteContext | None = None
    ) -> AsyncIterator[Route | ChatCompletionChunk]:
        # Through the handle a stream is one sequence: its route first, then its chunks.
        async for item in in_band(await self._router.chat_stream(request, context)):
            yield item

    async def completion(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> Routed[Completion]:
        return await self._router.completion(request, context)

    async def completion_stream(
        self, request: CompletionRequest, context: RouteContext | None = None
    ) -> AsyncIterator[Route | Completion]:
        async for item in in_band(await self._router.completion_stream(request, context)):
            yield item

    async def embeddings(
        self, request: EmbeddingRequest, context: RouteContext | None = None
    ) -> Routed[EmbeddingResponse]:
        return await self._router.embeddings(request, context)

    async def status(self) -> RoutingStatus:
        """This replica's routing state (`Router.status()`)."""
        return await self._router.routing_status()

    async def not_ready(self) -> list[str]:
        return await self._router.not_ready()

    async def __del__(self) -> None:
        await self._replica.aclose()
