"""The ingress deployment: the FastAPI app from `gateway.api`, answering through handles."""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.handles import CacheClient, RouterClient
from gateway.api import create_api
from gateway.config import GatewayConfig
from gateway.observability.metrics import serve_metric


@serve.deployment(name="Ingress")
@serve.ingress()
class Ingress:
    """Serves the gateway's HTTP API; model calls go to the router deployment, cache lookups
    and embeddings to the cache deployment (when the cache is in use)."""

    def __init__(
        self, config: GatewayConfig, router: DeploymentHandle, cache: DeploymentHandle | None
    ) -> None:
        self._config = config
        self._backend = RouterClient(router)
        self._cache = CacheClient(cache) if cache is not None else None

    def __serve_build_asgi_app__(self) -> FastAPI:
        replica = serve.get_replica_context().replica_id.unique_id
        self._app = create_api(
            self._config,
            self._backend,
            replica=replica,
            cache=self._cache,
            metrics=serve_metric,
        )
        return self._app

    async def __del__(self) -> None:
        # Serve's graceful shutdown of this replica: flush the audit trail before it goes.
        await self._app.state.pipeline.aclose()
