"""Issue #13, finding 9: identity headers accepted by client address alone, and group headers a
client adds through a proxy that sets only the user.

Ray Serve 2.60's HTTP proxy runs uvicorn with its defaults (ray/serve/_private/http_util.py:
`uvicorn.Config(...)` without `proxy_headers`), so `X-Forwarded-For` from a loopback peer
rewrites the client address the app sees. The test below serves the trusted-header check with
exactly that configuration: under uvicorn's default, a local process that names a trusted
proxy's address in `X-Forwarded-For` is let in; with `FORWARDED_ALLOW_IPS=""`, which `raygate
up` and the cluster manifests set, it is refused.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from deployments.local import ray_env
from gateway.errors import AuthError
from gateway.identity.trusted_header import TrustedHeaderAuth, TrustedHeaderConfig

ROOT = Path(__file__).resolve().parents[3]
PROXY = TrustedHeaderAuth(TrustedHeaderConfig(trusted_proxies=["10.9.8.7/32"]))


def _whoami(request: Request) -> JSONResponse:
    client = request.client.host if request.client else None
    try:
        principal = PROXY.authenticate(request.headers, client)
    except AuthError as exc:
        return JSONResponse({"error": exc.code, "client": client}, status_code=401)
    return JSONResponse({"user": principal.user_id if principal else None, "client": client})


APP = Starlette(routes=[Route("/whoami", _whoami)])


@asynccontextmanager
async def serve_like_ray_serve(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> AsyncIterator[str]:
    """uvicorn configured as Ray Serve's proxy configures it, in this environment."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Listening before uvicorn starts: connections wait in the backlog, no readiness poll.
    sock = socket.create_server(("127.0.0.1", 0))
    config = uvicorn.Config(lambda: APP, factory=True, lifespan="off", log_config=None)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


SPOOFED = {"x-forwarded-user": "ceo", "x-forwarded-for": "10.9.8.7"}


@pytest.mark.asyncio
async def test_uvicorns_default_lets_a_local_process_pose_as_the_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with serve_like_ray_serve(monkeypatch, {}) as url, httpx.AsyncClient() as client:
        answer = (await client.get(f"{url}/whoami", headers=SPOOFED)).json()
    assert answer == {"user": "ceo", "client": "10.9.8.7"}  # the suspicion, confirmed


@pytest.mark.asyncio
async def test_with_raygate_ups_environment_the_address_is_the_peers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {"FORWARDED_ALLOW_IPS": ray_env(tmp_path)["FORWARDED_ALLOW_IPS"]}
    async with serve_like_ray_serve(monkeypatch, env) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/whoami", headers=SPOOFED)
    assert response.status_code == 401
    assert response.json() == {"error": "untrusted_proxy", "client": "127.0.0.1"}


def test_raygate_up_and_the_cluster_manifests_turn_the_rewrite_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    assert ray_env(tmp_path)["FORWARDED_ALLOW_IPS"] == ""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.1")  # an operator's own choice wins
    assert ray_env(tmp_path)["FORWARDED_ALLOW_IPS"] == "10.0.0.1"
    launcher = (ROOT / "cluster" / "ray-cluster.yaml").read_text()
    assert launcher.count('export FORWARDED_ALLOW_IPS="";') == 2
    assert 'ENV FORWARDED_ALLOW_IPS=""' in (ROOT / "cluster" / "Dockerfile").read_text()


# --- headers the proxy does not set ------------------------------------------------------------


def test_a_groups_header_the_proxy_does_not_set_is_ignored() -> None:
    # The proxy sets only the user: everything else is what the client sent.
    client_added = Headers(
        {
            "x-forwarded-user": "carol",
            "x-forwarded-groups": "finance,gateway-admins",
            "x-forwarded-email": "ceo@example.org",
            "x-forwarded-department": "Board",
        }
    )
    principal = PROXY.authenticate(client_added, "10.9.8.7")
    assert principal is not None
    assert (principal.user_id, principal.groups, principal.email, principal.department) == (
        "carol",
        (),
        None,
        None,
    )


def test_headers_the_proxy_is_configured_to_set_are_read() -> None:
    config = TrustedHeaderConfig(
        trusted_proxies=["10.9.8.7/32"],
        groups_header="x-forwarded-groups",
        department_header="x-forwarded-department",
    )
    sent = Headers(
        {
            "x-forwarded-user": "carol",
            "x-forwarded-groups": "finance",
            "x-forwarded-department": "Vendors",
        }
    )
    principal = TrustedHeaderAuth(config).authenticate(sent, "10.9.8.7")
    assert principal is not None
    assert (principal.groups, principal.department) == (("finance",), "Vendors")
