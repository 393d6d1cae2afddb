"""Each router replica of the running gateway publishes its breakers to the gateway's
database, and `GET /admin/routing/replicas` lists it within a few seconds of start."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.e2e.conftest import Gateway


def test_the_router_replica_is_listed_with_its_breakers(gateway: Gateway) -> None:
    headers = {"authorization": f"Bearer {gateway.admin_key}"}
    deadline = time.monotonic() + 30
    with httpx.Client(base_url=gateway.base_url, headers=headers) as admin:
        while True:
            response = admin.get("/admin/routing/replicas")
            assert response.status_code == 200, response.text
            replicas: list[dict[str, Any]] = response.json()["replicas"]
            if replicas:
                break
            assert time.monotonic() < deadline, "no router replica published its status"
            time.sleep(0.2)
    replica = min(replicas, key=lambda r: r["age_s"])  # one runs; a replaced one ages out
    assert replica["replica"]
    assert 0 <= replica["age_s"] <= 3 * response.json()["interval_s"]
    breakers = {t["target"]: t["breaker"] for t in replica["status"]["targets"]}
    assert breakers["simulator/sim-small"] in ("closed", "half_open", "open")
