"""Provider keys through the admin API, end to end in one process: a provider without a key
is off; a key set with `PUT /admin/providers/{name}/key` switches it on for the next request
(the interval is 0 here), a rotated key is what the upstream receives next, removing it turns
the provider off again; the key is never shown or audited, and without a data key none is
taken."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from gateway.api import create_api
from gateway.config import GatewayConfig, parse_config
from gateway.providers.keys import KeyedConfig, ProviderKeyStore
from gateway.providers.registry import build_provider
from gateway.routing.keyed import KeyedRouter
from gateway.routing.router import Router
from gateway.simulator import SimulatorSettings
from gateway.storage.keyring import new_secret
from tests.support.simulator import Sim

ADMIN = {"authorization": "Bearer sk-admin-test"}
USER = {"authorization": "Bearer sk-dev-test"}
CHAT = {"model": "gpt", "messages": [{"role": "user", "content": "Hello"}]}


def config(tmp_path: Path, *, data_key: str | None) -> GatewayConfig:
    sealed = f', data_key: "{data_key}"' if data_key else ""
    return parse_config(
        f"""
auth: {{dev_key: sk-dev-test, admin_key: sk-admin-test}}
storage: {{url: "sqlite:///{tmp_path}/gw.db"{sealed}}}
audit: {{enabled: true}}
routing: {{key_sync_interval_s: 0}}
providers:
  openai: {{preset: openai, base_url: "http://sim/v1"}}
models:
  gpt: {{targets: [openai/sim-small]}}
""",
        env={},
    )


async def gateway(
    tmp_path: Path, sim: Sim, *, data_key: str | None
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    cfg = config(tmp_path, data_key=data_key)
    store = ProviderKeyStore.from_config(cfg) if data_key else None

    def build(keyed: GatewayConfig) -> Router:
        providers = {
            name: build_provider(name, p, transport=sim.transport)
            for name, p in keyed.enabled_providers().items()
        }
        return Router(keyed, providers)

    router = KeyedRouter(KeyedConfig(cfg, store), build)
    await router.start()
    app = create_api(cfg, router)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gw"
        ) as http:
            yield http, app
    finally:
        await app.state.pipeline.aclose()
        await router.aclose()


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    simulator = Sim(SimulatorSettings(seed=1, api_key="sk-second-2222"))  # takes that key only
    yield simulator
    await simulator.aclose()


@pytest.mark.asyncio
async def test_a_key_set_at_run_time_switches_the_provider_on_rotates_and_goes(
    tmp_path: Path, sim: Sim
) -> None:
    async for gw, app in gateway(tmp_path, sim, data_key=f"k1:{new_secret()}"):
        assert (await gw.get("/v1/models", headers=USER)).json()["data"] == []
        off = await gw.post("/v1/chat/completions", json=CHAT, headers=USER)
        assert off.status_code == 404 and off.json()["error"]["code"] == "model_not_found"

        put = await gw.put(
            "/admin/providers/openai/key", json={"api_key": "sk-first-1111"}, headers=ADMIN
        )
        assert put.status_code == 200, put.text
        assert put.json()["key"]["hint"] == "...1111" and "sk-first" not in put.text
        listed_to_users = (await gw.get("/v1/models", headers=USER)).json()["data"]
        assert [m["id"] for m in listed_to_users] == ["gpt"]
        on = await gw.post("/v1/chat/completions", json=CHAT, headers=USER)
        assert on.status_code != 404  # on, and its (wrong) key sent: the upstream refuses it
        assert "rejected raygate's credentials (401)" in on.json()["error"]["message"], on.text

        listed = (await gw.get("/admin/providers", headers=ADMIN)).json()
        (openai,) = listed["providers"]
        assert openai["enabled"] and openai["runtime_key"]["hint"] == "...1111"
        assert listed["models"] == {"gpt": ["openai/sim-small"]}

        await gw.put(
            "/admin/providers/openai/key", json={"api_key": "sk-second-2222"}, headers=ADMIN
        )
        rotated = await gw.post("/v1/chat/completions", json=CHAT, headers=USER)
        assert rotated.status_code == 200, rotated.text  # the one key the upstream takes

        removed = await gw.delete("/admin/providers/openai/key", headers=ADMIN)
        assert removed.status_code == 200
        again = await gw.post("/v1/chat/completions", json=CHAT, headers=USER)
        assert again.status_code == 404
        assert (await gw.delete("/admin/providers/openai/key", headers=ADMIN)).status_code == 404

        await app.state.pipeline.responder.audit.flush()
        audit = await gw.get("/admin/audit/records", headers=ADMIN)
        records = audit.json()["records"]
        actions = [(r["admin_action"], r["admin_target"]) for r in records if r["admin_action"]]
        assert ("providers.set_key", "provider:openai") in actions
        assert ("providers.remove_key", "provider:openai") in actions
        assert "sk-first-1111" not in json.dumps(records)
        assert "sk-second-2222" not in json.dumps(records)


@pytest.mark.asyncio
async def test_provider_keys_are_refused_without_a_data_key_or_a_known_provider(
    tmp_path: Path, sim: Sim
) -> None:
    async for gw, _ in gateway(tmp_path, sim, data_key=None):
        put = await gw.put("/admin/providers/openai/key", json={"api_key": "sk-1"}, headers=ADMIN)
        assert put.status_code == 400
        assert put.json()["error"]["code"] == "provider_keys_not_enabled"
        ghost = await gw.put("/admin/providers/ghost/key", json={"api_key": "sk-1"}, headers=ADMIN)
        assert ghost.status_code == 404
        anonymous = await gw.put("/admin/providers/openai/key", json={"api_key": "sk-1"})
        assert anonymous.status_code == 401
        as_user = await gw.put(
            "/admin/providers/openai/key", json={"api_key": "sk-1"}, headers=USER
        )
        assert as_user.status_code in (401, 403)
