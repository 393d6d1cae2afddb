"""The console's static files leave no audit record (they are nobody's request); its SSO
sign-ins and the admin API calls it makes do."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.gateway import ADMIN_KEY, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{db}"}}
cache: {{enabled: false}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
"""


@pytest.mark.asyncio
async def test_console_files_are_not_audited_and_its_api_calls_are(tmp_path: Path) -> None:
    async with in_process_gateway(CONFIG.format(db=tmp_path / "gw.db")) as gateway:
        for path in ("/console/", "/console/console.js", "/console/console.css"):
            assert (await gateway.http.get(path)).status_code == 200, path
        # SSO is off here: the start of a sign-in is refused, and that is recorded.
        assert (await gateway.http.get("/console/sso/start")).status_code == 404
        admin = {"authorization": f"Bearer {ADMIN_KEY}"}
        assert (await gateway.http.get("/admin/whoami", headers=admin)).status_code == 200
        routes = [record["route"] for record in await gateway.records()]
    assert "/admin/whoami" in routes and "/console/sso/start" in routes
    assert not [route for route in routes if route.startswith("/console") and "sso" not in route]
