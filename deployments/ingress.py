"""The ingress deployment: the FastAPI app from `gateway.api`, answering through handles."""

from __future__ import annotations

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.util.metrics import Counter

from deployments.handles import CacheClient, RouterClient
from gateway.api import create_api
from gateway.config import GatewayConfig


class _CacheCounters:
    """Prometheus counters of what the cache answered and what that saved, per model:
    `raygate_cache_requests{model, phase}` and `raygate_cache_cost_avoided_usd{model}`."""

    def __init__(self) -> None:
        self._requests = Counter(
            "raygate_cache_requests",
            description="Chat requests by cache outcome: exact, normalized, semantic, miss, bypass",
            tag_keys=("model", "phase"),
        )
        self._avoided = Counter(
            "raygate_cache_cost_avoided_usd",
            description="List-price USD that cache hits saved, at the original target's prices.",
            tag_keys=("model",),
        )

    def __call__(self, model: str, phase: str, cost_avoided_usd: float | None) -> None:
        self._requests.inc(tags={"model": model, "phase": phase})
        if cost_avoided_usd:
            self._avoided.inc(cost_avoided_usd, tags={"model": model})


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
            cache_events=_CacheCounters() if self._cache is not None else None,
        )
        return self._app

    async def __del__(self) -> None:
        # Serve's graceful shutdown of this replica: flush the audit trail before it goes.
        await self._app.state.pipeline.aclose()
