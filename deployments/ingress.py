"""The ingress deployment: the FastAPI app from `gateway.api`, answering through handles."""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import CacheClient, RouterClient
from deployments.router import RoutingReplica
from gateway.api import create_api
from gateway.api.backend import Backend
from gateway.api.near_cache import NearCache
from gateway.cache.log import CacheLog
from gateway.config import GatewayConfig
from gateway.observability.metrics import serve_metric
from gateway.storage import Database
from gateway.storage.sealing import Sealer


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """Serves the gateway's HTTP API; cache lookups and embeddings go to the cache deployment
    (when the cache is in use), and exact repeats it served are answered here (`NearCache`).
    Model calls go to this replica's own router (`router` None: `serve.colocate_router`, the
    local models reached through `local_models`' handles), or to the router deployment
    through its handle."""

    # Serve awaits an async constructor; a colocated router's health checks need the loop.
    async def __init__(  # type: ignore[misc]
        self,
        config: GatewayConfig,
        router: DeploymentHandle | None,
        cache: DeploymentHandle | None,
        local_models: dict[str, DeploymentHandle] | None = None,
    ) -> None:
        self._config = config
        self._routing: RoutingReplica | None = None
        self._backend: Backend
        if router is None:
            self._routing = RoutingReplica(config, local_models or {})
            await self._routing.start()
            self._backend = self._routing.router
        else:
            self._backend = RouterClient(router)
        self._cache = CacheClient(cache) if cache is not None else None
        self._near: NearCache | None = None
        if self._cache is not None and config.cache.near_entries > 0:
            sealer = Sealer.from_keyring(config.storage.data_keyring())
            entry_log = CacheLog(Database(config.storage.url), sealer=sealer)
            self._near = NearCache(config.cache, entry_log, self._cache.count_nearby)
            await self._near.start()

    def __serve_build_asgi_app__(self) -> FastAPI:
        replica = serve.get_replica_context().replica_id.unique_id
        self._app = create_api(
            self._config,
            self._backend,
            replica=replica,
            cache=self._cache,
            metrics=serve_metric,
            near=self._near,
        )
        return self._app

    async def __del__(self) -> None:
        # Serve's graceful shutdown of this replica: flush the audit trail before it goes.
        try:
            await self._app.state.pipeline.aclose()
        finally:
            if self._routing is not None:
                await self._routing.aclose()
