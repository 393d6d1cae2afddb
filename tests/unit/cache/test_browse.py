"""Browsing the cache's entries (`GET /admin/cache/entries`): pages of the entry log, newest
first, on SQLite and PostgreSQL, texts shown no more than the audit trail keeps them."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI, Request

from gateway.api.admin.cache import cache_routes
from gateway.api.errors import install_error_handlers
from gateway.audit.content import ContentPolicy
from gateway.cache.browse import CacheBrowser
from gateway.cache.log import CacheLog, LoggedEntry
from gateway.cache.lookup import Selector
from gateway.errors import AuthError
from gateway.storage import Database
from gateway.storage.keyring import Keyring
from gateway.storage.sealing import Sealer

ADMIN = {"authorization": "Bearer admin-secret"}
PROMPT = "Mail ana@example.org the report"


@pytest.fixture(params=["sqlite", "postgresql"])
def entry_log(request: pytest.FixtureRequest, tmp_path: Path) -> CacheLog:
    """An entry log holding five entries, m0..m4 (m4 for the model sim-b), the second one
    invalidated, over each backend; sealed, as with `storage.data_key`."""
    url = (
        f"sqlite:///{tmp_path / 'cache.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("postgres_url"))
    )
    sealer = Sealer(Keyring.parse("d1:" + "k" * 40))
    log = CacheLog(Database(url), sealer=sealer)
    for n in range(5):
        model = "sim-b" if n == 4 else "sim-a"
        log.append(
            LoggedEntry(0, "scope-1", model, f"{PROMPT} {n}", f"answer {n}", None, 100.0 + n)
        )
    log.invalidate(Selector(entry_ids=(2,)), now=200.0)
    return log


def test_pages_run_newest_first_without_invalidated_entries(entry_log: CacheLog) -> None:
    browser = CacheBrowser(entry_log, ContentPolicy("full", "full"))
    first = browser.page(2)
    assert [e.id for e in first.entries] == [5, 4]
    assert first.entries[0].model == "sim-b" and first.entries[0].answer == "answer 4"
    assert first.entries[0].prompt == f"{PROMPT} 4"  # opened: the log itself holds it sealed
    rest = browser.page(2, before=first.next_before)
    assert [e.id for e in rest.entries] == [3, 1] and rest.next_before is None
    assert [e.id for e in browser.page(10, model="sim-a").entries] == [4, 3, 1]


def test_texts_are_shown_as_the_audit_trail_keeps_them(entry_log: CacheLog) -> None:
    redacted = CacheBrowser(
        entry_log,
        ContentPolicy("redacted", "hash", lambda t: t.replace("ana@example.org", "[EMAIL]")),
    )
    (entry,) = redacted.page(1).entries
    assert (entry.prompt, entry.prompt_mode) == ("Mail [EMAIL] the report 4", "redacted")
    assert entry.answer == hashlib.sha256(b"answer 4").hexdigest()
    hidden = CacheBrowser(entry_log, ContentPolicy("none", "none")).page(1).entries[0]
    assert (hidden.prompt, hidden.answer, hidden.answer_mode) == (None, None, "none")


async def gate(request: Request, needs: str, **_: object) -> str:
    """The routes' admin gate, cut down: one admin credential, holding every permission."""
    if request.headers.get("authorization") != ADMIN["authorization"]:
        raise AuthError("admin credentials required")
    return "admin"


class NoCache:
    """A cache backend that is never asked anything by these routes."""


async def _client(browser: CacheBrowser | None) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(cache_routes(gate, NoCache(), browser))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http


@pytest_asyncio.fixture
async def client(entry_log: CacheLog) -> AsyncIterator[httpx.AsyncClient]:
    async for http in _client(CacheBrowser(entry_log, ContentPolicy("full", "hash"))):
        yield http


@pytest.mark.asyncio
async def test_the_route_pages_with_before(client: httpx.AsyncClient) -> None:
    first = await client.get("/admin/cache/entries", params={"limit": 3}, headers=ADMIN)
    assert first.status_code == 200, first.text
    body = first.json()
    assert [e["id"] for e in body["entries"]] == [5, 4, 3]
    assert body["entries"][0]["answer_mode"] == "hash"
    assert body["entries"][0]["created_at"].startswith("1970-01-01T00:01:44")
    params = {"before": body["next_before"]}
    rest = (await client.get("/admin/cache/entries", params=params, headers=ADMIN)).json()
    assert [e["id"] for e in rest["entries"]] == [1]
    assert (await client.get("/admin/cache/entries")).status_code == 401


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("params", "param"),
    [({"limit": "0"}, "limit"), ({"before": "x"}, "before"), ({"colour": "red"}, "colour")],
)
async def test_the_route_refuses_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, str], param: str
) -> None:
    response = await client.get("/admin/cache/entries", params=params, headers=ADMIN)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


@pytest.mark.asyncio
async def test_without_the_database_the_route_says_so() -> None:
    async for http in _client(None):
        response = await http.get("/admin/cache/entries", headers=ADMIN)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "cache_browser_unavailable"
