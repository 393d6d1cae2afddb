"""The whole gateway in one process, without Ray: the HTTP API (`create_api`) over a real
router whose providers call the upstream simulator in process, and, when asked, a real cache
replica (MiniLM + FAISS) over the config's database.

    async with in_process_gateway(CONFIG) as gw:
        response = await gw.chat("Hello")

Error shapes, limits, stream error events, the policy and the cache are tested this way;
`tests/e2e` keeps what only a running `raygate up` and the official SDKs can show.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI

from gateway.api import create_api
from gateway.api.embedding import Embed
from gateway.api.pipeline import Pipeline
from gateway.cache.cache import SemanticCache
from gateway.cache.embedder import Embedder
from gateway.cache.log import CacheLog
from gateway.cache.service import CacheService
from gateway.config import GatewayConfig, parse_config
from gateway.providers.registry import build_provider
from gateway.routing.router import Router
from gateway.simulator import SimulatorSettings
from gateway.storage import Database
from gateway.storage.sealing import Sealer
from tests.support.simulator import Sim

ADMIN_KEY = "sk-raygate-admin"


@dataclass
class InProcessGateway:
    """A gateway app, the simulator behind it, and a client of each."""

    app: FastAPI
    http: httpx.AsyncClient
    sim: Sim
    router: Router
    headers: dict[str, str]  # sent with every request unless overridden

    @property
    def pipeline(self) -> Pipeline:
        """The composed request path (its stages, for tests that look inside)."""
        return self.app.state.pipeline  # type: ignore[no-any-return]

    async def post(
        self, path: str, body: Any = None, *, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> httpx.Response:
        """POST `body` as JSON (or `content=` raw bytes) with the default headers."""
        sent = {**self.headers, **(headers or {})}
        if body is not None:
            kw["json"] = body
        return await self.http.post(path, headers=sent, **kw)

    async def chat(
        self,
        text: str,
        *,
        model: str = "sim-small",
        headers: Mapping[str, str] | None = None,
        **body: Any,
    ) -> httpx.Response:
        """One user turn to `/v1/chat/completions`."""
        payload = {"model": model, "messages": [{"role": "user", "content": text}], **body}
        return await self.post("/v1/chat/completions", payload, headers=headers)

    async def records(self) -> list[dict[str, Any]]:
        """Every audit record so far, newest first (the writer flushed first)."""
        audit = self.pipeline.responder.audit
        assert audit is not None, "audit is off in this config"
        await audit.flush()
        response = await self.http.get(
            "/admin/audit/records", headers={"authorization": f"Bearer {ADMIN_KEY}"}
        )
        response.raise_for_status()
        return list(response.json()["records"])


@asynccontextmanager
async def in_process_gateway(
    config: str | GatewayConfig,
    *,
    embedder: Embedder | None = None,
    embed: Embed | None = None,
    headers: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    sim_settings: SimulatorSettings | None = None,
) -> AsyncIterator[InProcessGateway]:
    """A gateway for `config` (YAML, or a parsed config) whose every provider is the
    simulator in process. With `embedder`, a real cache replica (when the config uses the
    cache) whose embedder the policy shares; `embed` gives the policy an embedder of its own.
    The admin key is `ADMIN_KEY` unless the config sets one."""
    if isinstance(config, str):
        config = parse_config(config, env={"RAYGATE_ADMIN_KEY": ADMIN_KEY, **(env or {})})
    if config.auth.admin_key is None:
        config = config.model_copy(
            update={"auth": config.auth.model_copy(update={"admin_key": ADMIN_KEY})}
        )
    sim = Sim(sim_settings)
    providers = {
        name: build_provider(name, provider, transport=sim.transport)
        for name, provider in config.enabled_providers().items()
    }
    router = Router(config, providers)
    cache = _cache(config, embedder) if embedder is not None else None
    if cache is not None:
        await cache.start()
    app = create_api(config, router, cache=cache, embed=embed)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
            yield InProcessGateway(app, http, sim, router, dict(headers or {}))
    finally:
        await app.state.pipeline.aclose()
        if cache is not None:
            await cache.aclose()
        await router.aclose()
        await sim.aclose()


def _cache(config: GatewayConfig, embedder: Embedder) -> CacheService | None:
    if not config.cache.in_use():
        return None

    async def embed(texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(embedder.embed, texts)

    sealer = Sealer.from_keyring(config.storage.data_keyring())
    return CacheService(
        SemanticCache(embedder, config.cache),
        embed,
        CacheLog(Database(config.storage.url), sealer=sealer),
    )
