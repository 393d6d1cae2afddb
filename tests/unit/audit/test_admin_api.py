"""The /admin/audit routes on a FastAPI app, in-process."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request

from gateway.api.admin.audit import audit_routes
from gateway.api.errors import install_error_handlers
from gateway.audit import AuditStore
from gateway.errors import AuthError
from tests.unit.audit.factory import T0, make_records

ADMIN = {"authorization": "Bearer admin-secret"}


async def gate(request: Request, needs: str, **_: object) -> str:
    """The routes' admin gate, cut down: one admin credential, holding `audit.read`."""
    if request.headers.get("authorization") != ADMIN["authorization"]:
        raise AuthError("admin credentials required")
    assert needs == "audit.read"
    return "admin"


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    audit = AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    audit.append(make_records(9))
    return audit


@pytest_asyncio.fixture
async def client(store: AuditStore) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(audit_routes(gate, store, clock=lambda: T0 + timedelta(days=1)))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/audit/records"),
        ("GET", "/admin/audit/summary"),
        ("GET", "/admin/audit/export"),
        ("GET", "/admin/audit/timeseries"),
        ("POST", "/admin/audit/verify"),
    ],
)
async def test_every_route_needs_admin_credentials(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, headers={"authorization": "Bearer user"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.asyncio
async def test_records_filter_and_page_with_the_cursor(client: httpx.AsyncClient) -> None:
    params = {"group": "analysts", "limit": "2"}
    first = (await client.get("/admin/audit/records", params=params, headers=ADMIN)).json()
    assert [r["seq"] for r in first["records"]] == [9, 7]
    params["cursor"] = first["next_cursor"]
    second = (await client.get("/admin/audit/records", params=params, headers=ADMIN)).json()
    assert [r["seq"] for r in second["records"]] == [5, 3]
    record = second["records"][0]
    assert record["principal"]["groups"] == ["staff", "analysts"]
    assert record["hash"] and record["prev_hash"]


@pytest.mark.asyncio
async def test_records_by_age_and_action(client: httpx.AsyncClient) -> None:
    # The clock is a day after T0: "1441m" ago is T0 - 1 minute, so everything matches.
    params = {"since": "1441m", "action": "block", "until": "2025-03-01T12:06:00Z"}
    page = (await client.get("/admin/audit/records", params=params, headers=ADMIN)).json()
    assert [r["seq"] for r in page["records"]] == [6, 4, 2]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"usr": "alice"}, "usr"),
        ({"since": "the other day"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "5000"}, "limit"),
        ({"cursor": "xyz"}, "cursor"),
    ],
)
async def test_bad_parameters_are_400s_naming_the_parameter(
    client: httpx.AsyncClient, params: dict[str, str], param: str
) -> None:
    response = await client.get("/admin/audit/records", params=params, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.asyncio
async def test_summary_groups_with_counts_tokens_and_cost(client: httpx.AsyncClient) -> None:
    response = await client.get("/admin/audit/summary", params={"by": "topic"}, headers=ADMIN)
    body = response.json()
    assert body["by"] == "topic"
    assert {r["key"]: r["count"] for r in body["rows"]} == {"taxes": 3, "payroll": 3, "weather": 3}
    assert all({"tokens_in", "tokens_out", "cost_usd"} <= set(r) for r in body["rows"])
    bad = await client.get("/admin/audit/summary", params={"by": "colour"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "by"


@pytest.mark.asyncio
async def test_timeseries_counts_the_requests_per_bucket(client: httpx.AsyncClient) -> None:
    params = {"bucket": "10m", "since": "2025-03-01T12:00:00Z", "until": "2025-03-01T12:20:00Z"}
    response = await client.get("/admin/audit/timeseries", params=params, headers=ADMIN)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["bucket"], body["bucket_s"]) == ("10m", 600)
    assert [p["start"][:16] for p in body["points"]] == ["2025-03-01T12:00", "2025-03-01T12:10"]
    assert [p["requests"] for p in body["points"]] == [9, 0]  # a minute apart, from T0
    assert body["points"][0]["latency_p95_ms"] == 12.5
    filtered = await client.get(
        "/admin/audit/timeseries", params={**params, "model": "sim-large"}, headers=ADMIN
    )
    assert filtered.json()["points"][0]["requests"] == 4


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "params",
    [{"bucket": "5m"}, {"bucket": "10s", "since": "2025-01-01"}, {"step": "1m"}],
)
async def test_timeseries_refuses_bad_buckets_and_windows(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/admin/audit/timeseries", params=params, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == next(iter(params))


@pytest.mark.asyncio
async def test_export_streams_csv_and_json(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/admin/audit/export", params={"format": "csv", "user": "user2"}, headers=ADMIN
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    assert [r["seq"] for r in csv.DictReader(io.StringIO(response.text))] == ["3", "6", "9"]
    response = await client.get("/admin/audit/export", params={"format": "json"}, headers=ADMIN)
    assert [r["seq"] for r in json.loads(response.text)] == list(range(1, 10))


@pytest.mark.asyncio
async def test_verify_reports_intact_and_broken_chains(
    client: httpx.AsyncClient, store: AuditStore
) -> None:
    report = (await client.post("/admin/audit/verify", headers=ADMIN)).json()
    assert report["ok"] is True and report["checked"] == 9
    kept = report["head"]
    store.db.execute("UPDATE audit_records SET prompt = 'changed' WHERE seq = 7")
    report = (await client.post("/admin/audit/verify", headers=ADMIN)).json()
    assert report["ok"] is False
    assert (report["problem"]["kind"], report["problem"]["seq"]) == ("altered", 7)
    report = (
        await client.post("/admin/audit/verify", json={"expected_head": kept}, headers=ADMIN)
    ).json()
    assert report["ok"] is False


@pytest.mark.asyncio
async def test_verify_rejects_a_malformed_body(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/admin/audit/verify", json={"expected_head": {"seq": "x"}}, headers=ADMIN
    )
    assert response.status_code == 400
