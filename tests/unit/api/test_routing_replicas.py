"""`GET /admin/routing/replicas` in process: the statuses router replicas published to the
gateway's database (here published straight to the board, since no router deployment runs
in process), those within three publish intervals only, for admin credentials only."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.routing.board import StatusBoard
from gateway.storage import Database
from tests.support.gateway import ADMIN_KEY, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{db}"}}
routing: {{status_publish_interval_s: 2}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
"""
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest.mark.asyncio
async def test_the_replicas_that_published_lately_are_listed(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    async with in_process_gateway(CONFIG.format(db=db)) as gw:
        status = gw.router.status()
        StatusBoard(Database(f"sqlite:///{db}")).publish("replica-a", status)
        earlier = StatusBoard(Database(f"sqlite:///{db}"), clock=lambda: time.time() - 7)
        earlier.publish("replica-gone", status)  # more than 3 intervals of 2 s ago

        response = await gw.http.get("/admin/routing/replicas", headers=ADMIN)

        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["interval_s"] == 2
        [replica] = answer["replicas"]
        assert replica["replica"] == "replica-a"
        assert 0 <= replica["age_s"] < 6
        assert replica["status"] == status.model_dump(mode="json")
        assert replica["status"]["targets"][0]["breaker"] == "closed"


@pytest.mark.asyncio
async def test_the_replicas_are_shown_to_admins_only(tmp_path: Path) -> None:
    async with in_process_gateway(CONFIG.format(db=tmp_path / "gw.db")) as gw:
        for secret in ("sk-dev", "sk-wrong"):
            headers = {"authorization": f"Bearer {secret}"}
            response = await gw.http.get("/admin/routing/replicas", headers=headers)
            assert response.status_code in (401, 403), response.text
        empty = await gw.http.get("/admin/routing/replicas", headers=ADMIN)
        assert empty.json() == {"replicas": [], "interval_s": 2.0}
