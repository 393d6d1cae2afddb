"""`GET /admin/whoami`, in process: any admin role is let in and told what it may do; the
console signs in with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.identity.roles import PERMISSIONS
from tests.support.gateway import ADMIN_KEY, InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev, key_secret: "0123456789abcdef0123456789abcdef"}}
storage: {{url: "sqlite:///{db}"}}
cache: {{enabled: false}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
"""
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(CONFIG.format(db=tmp_path / "gw.db")) as gw:
        yield gw


@pytest.mark.asyncio
async def test_the_admin_key_holds_every_permission(gateway: InProcessGateway) -> None:
    response = await gateway.http.get("/admin/whoami", headers=ADMIN)
    assert response.status_code == 200
    assert response.json() == {
        "user": "admin",
        "auth_method": "admin_key",
        "roles": ["admin"],
        "granted_by": ["admin_key"],
        "permissions": list(PERMISSIONS),
    }


@pytest.mark.asyncio
async def test_a_key_manager_is_told_what_a_key_manager_may_do(gateway: InProcessGateway) -> None:
    issued = await gateway.post(
        "/admin/keys", {"user": "kim", "admin_role": "key_manager"}, headers=ADMIN
    )
    manager = {"authorization": f"Bearer {issued.json()['secret']}"}
    body = (await gateway.http.get("/admin/whoami", headers=manager)).json()
    assert (body["user"], body["roles"]) == ("kim", ["key_manager"])
    assert body["permissions"] == ["keys.read", "keys.write", "users.read", "users.write"]


@pytest.mark.asyncio
async def test_callers_without_an_admin_role_are_refused_and_audited(
    gateway: InProcessGateway,
) -> None:
    for headers in ({}, {"authorization": "Bearer sk-dev"}):
        response = await gateway.http.get("/admin/whoami", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_admin_key"
    records = await gateway.records()
    assert [r["admin_action"] for r in records[:2]] == ["admin.whoami", "admin.whoami"]
