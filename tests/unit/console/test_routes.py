"""The console's files as the gateway serves them: a strict Content-Security-Policy on every
one, the page never cached, scripts revalidated by ETag, and nothing outside the package."""

from __future__ import annotations

import posixpath
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from gateway.api.errors import install_error_handlers
from gateway.console.routes import CONTENT_SECURITY_POLICY, console_routes, load_assets


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(console_routes())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as http:
        yield http


@pytest.mark.asyncio
async def test_console_redirects_to_its_page_relative_to_the_prefix(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/console")
    assert response.status_code == 308
    assert response.headers["location"] == "console/"


@pytest.mark.asyncio
async def test_the_page_is_never_cached_and_loads_no_inline_script(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/console/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    scripts = re.findall(r"<script[^>]*>(.*?)</script>", response.text, re.S)
    assert scripts and all(body.strip() == "" for body in scripts)  # src= only
    assert "style=" not in response.text


@pytest.mark.asyncio
async def test_scripts_are_revalidated_by_etag(client: httpx.AsyncClient) -> None:
    first = await client.get("/console/console.js")
    assert first.status_code == 200
    assert first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert first.headers["cache-control"] == "no-cache"
    again = await client.get(
        "/console/console.js", headers={"if-none-match": first.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "path",
    [
        "/console/nope.js",
        "/console/../routes.py",
        "/console/%2e%2e/routes.py",
        "/console/routes.py",
    ],
)
async def test_anything_else_is_a_404_in_the_error_shape(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["type"]


def test_every_module_the_page_imports_is_served_and_nothing_comes_from_elsewhere() -> None:
    assets = load_assets()
    assert {"index.html", "console.js", "console.css"} <= set(assets)
    for name, asset in assets.items():
        text = asset.body.decode().replace("http://www.w3.org/2000/svg", "")  # a name, not a URL
        assert "http://" not in text and "https://" not in text, name  # no CDN, no network
        for imported in re.findall(r"""(?:from|import)\s+["'](\.[^"']+)["']""", text):
            assert posixpath.normpath(posixpath.join(posixpath.dirname(name), imported)) in assets
