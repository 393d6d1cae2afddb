"""The admin API's roles through the whole app, in process: each route lets in only the roles
that hold its permission, and every admin request, refused ones included, leaves one audit
record naming its actor, the roles they acted under, the action and its target. And the audit
trail keeps a prompt as it was sent on, never the values the policy took out of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.support.gateway import ADMIN_KEY, InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev, key_secret: "0123456789abcdef0123456789abcdef"}}
storage: {{url: "sqlite:///{db}"}}
audit: {{prompt: full, response: full}}
limits: {{body_timeout_s: 0.5}}
cache: {{enabled: false}}
policy:
  profiles:
    default: {{pii: {{EMAIL: redact, CREDIT_CARD: block}}}}
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


async def issue(gw: InProcessGateway, user: str, **body: Any) -> dict[str, str]:
    """A bearer header for a key issued to `user` by the break-glass admin key."""
    response = await gw.post("/admin/keys", {"user": user, **body}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return {"authorization": f"Bearer {response.json()['secret']}"}


def admin_records(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["admin_action"], r["status"], r["principal"]["user_id"] if r["principal"] else None)
        for r in reversed(records)
        if r["route"].startswith("/admin/") and r["route"] != "/admin/audit/records"
    ]


@pytest.mark.asyncio
async def test_an_auditor_reads_the_trail_and_cannot_touch_keys(gateway: InProcessGateway) -> None:
    auditor = await issue(gateway, "ines", admin_role="auditor")
    assert (await gateway.http.get("/admin/audit/records", headers=auditor)).status_code == 200
    refused = await gateway.post("/admin/keys", {"user": "mallory"}, headers=auditor)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "insufficient_admin_role"
    chat = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
    assert (await gateway.post("/v1/chat/completions", chat, headers=auditor)).status_code == 403
    trail = admin_records(await gateway.records())
    assert trail == [
        ("admin_keys.issue", 201, "admin"),
        ("keys.issue", 403, "ines"),
    ]


@pytest.mark.asyncio
async def test_a_key_manager_manages_keys_but_cannot_make_an_admin(
    gateway: InProcessGateway,
) -> None:
    manager = await issue(gateway, "kim", admin_role="key_manager")
    issued = await gateway.post("/admin/keys", {"user": "bo"}, headers=manager)
    assert issued.status_code == 201
    key_id = issued.json()["key"]["id"]
    promoted = await gateway.post(
        "/admin/keys", {"user": "kim2", "admin_role": "admin"}, headers=manager
    )
    assert promoted.status_code == 403
    revoked = await gateway.http.delete(f"/admin/keys/{key_id}", headers=manager)
    assert revoked.status_code == 200
    stranger = await gateway.http.delete(f"/admin/keys/{key_id}")
    assert stranger.status_code == 401
    records = await gateway.records()
    trail = admin_records(records)
    assert trail[1:] == [
        ("keys.issue", 201, "kim"),
        ("admin_keys.issue", 403, "kim"),
        ("keys.revoke", 200, "kim"),
        ("keys.revoke", 401, None),
    ]
    revoke = next(r for r in records if r["admin_action"] == "keys.revoke" and r["status"] == 200)
    assert revoke["admin_target"] == f"key:{key_id}"
    assert revoke["principal"]["roles"] == ["key_manager"]


@pytest.mark.asyncio
async def test_the_audit_keeps_the_prompt_as_sent_never_the_values_taken_out(
    gateway: InProcessGateway,
) -> None:
    dev = {"authorization": "Bearer sk-dev"}

    def chat(text: str) -> dict[str, Any]:
        return {"model": "sim-small", "messages": [{"role": "user", "content": text}]}

    redacted = await gateway.post("/v1/chat/completions", chat("mail ana@example.org"), headers=dev)
    blocked = await gateway.post(
        "/v1/chat/completions", chat("card 4111 1111 1111 1111 for ana@example.org"), headers=dev
    )
    assert (redacted.status_code, blocked.status_code) == (200, 403)
    prompts = [r["prompt"] for r in await gateway.records() if r["route"].startswith("/v1/")]
    assert len(prompts) == 2
    for prompt in prompts:
        assert "ana@example.org" not in prompt and "4111" not in prompt
    assert "[EMAIL_1]" in prompts[1]


@pytest.mark.asyncio
async def test_a_body_that_trickles_in_is_cut_off_with_a_408(gateway: InProcessGateway) -> None:
    never = asyncio.Event()

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"model": "sim-small", '
        await never.wait()  # the rest never comes
        yield b"}"

    headers = {"authorization": "Bearer sk-dev"}
    response = await gateway.post("/v1/chat/completions", content=trickle(), headers=headers)
    assert response.status_code == 408
    assert response.json()["error"]["code"] == "request_timeout"
    assert await gateway.sim.requests() == []


@pytest.mark.asyncio
async def test_the_http_client_sees_the_same_error_shape_for_admin_refusals(
    gateway: InProcessGateway,
) -> None:
    response = await gateway.http.get("/admin/routing", headers={"authorization": "Bearer x"})
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert isinstance(response, httpx.Response)
