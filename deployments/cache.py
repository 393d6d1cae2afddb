"""The cache deployment: the MiniLM embedder and one full FAISS cache replica, fused.

Embedding and the semantic lookup always run together on a miss of the keyed phases, so they
share a replica (one Serve hop, not two). Concurrent requests' texts are embedded in one
forward pass (`gateway.cache.batching`); on a GPU node give the deployment a fraction of a GPU
(`serve.cache.num_gpus`) and the embedder runs in half precision there. Replicas stay in step
through the entry log in the gateway's database (see `gateway.cache.log`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np
from ray import serve

from gateway.cache.batching import EmbedBatcher
from gateway.cache.cache import SemanticCache
from gateway.cache.embedder import Embedder
from gateway.cache.log import CacheLog
from gateway.cache.lookup import (
    CacheQuery,
    CacheResult,
    Exploration,
    NearbyHits,
    NewEntry,
    Observation,
    Selector,
)
from gateway.cache.precache import FollowUp
from gateway.cache.request import CacheRequest
from gateway.cache.service import CacheService
from gateway.config import GatewayConfig
from gateway.observability.metrics import instruments, serve_metric
from gateway.storage import Database
from gateway.storage.sealing import Sealer


@serve.deployment(name="Cache")
class CacheDeployment:
    """Embeds texts (batched) and answers lookups, inserts, observations of explored
    candidates, pre-caching suggestions and invalidations."""

    async def __init__(self, config: GatewayConfig) -> None:  # type: ignore[misc]
        settings = config.cache
        self._embedder = Embedder(
            batch_size=settings.embed_batch_size,
            cuda_graphs=settings.cuda_graphs,
            onnx=settings.onnx,
        )
        self._batcher = EmbedBatcher(
            self._embedder.embed, settings.max_batch_size, settings.batch_wait_timeout_s
        )
        self._db = Database(config.storage.url)
        self._service = CacheService(
            SemanticCache(self._embedder, settings),
            self._embed,
            CacheLog(self._db, sealer=Sealer.from_keyring(config.storage.data_keyring())),
            sync_interval_s=settings.sync_interval_s,
        )
        await self._service.start()
        self._replica = serve.get_replica_context().replica_id.unique_id
        metrics = instruments(
            serve_metric,
            ["raygate_cache_lookups", "raygate_cache_rejected_by_verification",
             "raygate_cache_explorations", "raygate_cache_observations"],
        )  # fmt: skip
        self._lookups = metrics["raygate_cache_lookups"]
        self._rejected = metrics["raygate_cache_rejected_by_verification"]
        self._explored = metrics["raygate_cache_explorations"]
        self._observed = metrics["raygate_cache_observations"]

    async def _embed(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1:
            return np.atleast_2d(await self._batcher.embed(texts[0]))
        # Corpora (policy topics, attack phrases) come in bulk: one direct batched call.
        return await asyncio.to_thread(self._embedder.embed, texts)

    async def embed(self, texts: list[str]) -> np.ndarray:
        return await self._service.embed(texts)

    async def lookup(self, query: CacheQuery) -> CacheResult:
        result = await self._service.lookup(query)
        self._lookups.inc(tags={"phase": result.phase})
        if result.rejected:
            self._rejected.inc()
        if result.explore is not None:
            self._explored.inc(tags={"kind": "shadow" if result.explore.shadow else "observed"})
        return dataclasses.replace(result, replica=self._replica)

    async def insert(self, entry: NewEntry) -> int:
        return await self._service.insert(entry)

    async def observe(
        self,
        exploration: Exploration,
        fresh_answer: str,
        tokens: int | None = None,
        verdict: bool | None = None,
    ) -> Observation:
        """Learn from an explored candidate's fresh answer (see `CacheService.observe`)."""
        observation = await self._service.observe(
            exploration, fresh_answer, tokens=tokens, verdict=verdict
        )
        if observation.equivalent is not None:
            self._observed.inc(
                tags={
                    "kind": "shadow" if observation.shadow else "observed",
                    "outcome": "equivalent" if observation.equivalent else "different",
                }
            )
        return observation

    async def follow_ups(self, request: CacheRequest) -> list[FollowUp]:
        """Follow-ups worth pre-answering after `request` (see `CacheService.follow_ups`)."""
        return await self._service.follow_ups(request)

    async def count_nearby(self, hits: NearbyHits) -> None:
        """Count exact hits an ingress replica answered from its near cache as this
        replica's own (see `gateway.api.near_cache`)."""
        await self._service.count_nearby(hits)
        if hits.count:
            self._lookups.inc(hits.count, tags={"phase": "exact"})

    async def invalidate(self, selector: Selector) -> int:
        return await self._service.invalidate(selector)

    async def sync(self) -> int:
        """Apply the entry log now (tests; replicas also do it every sync interval)."""
        return await self._service.sync()

    async def stats(self) -> dict[str, Any]:
        stats = await self._service.stats()
        return stats | {"replica": self._replica}

    async def __del__(self) -> None:
        await self._service.aclose()
