"""The console's "Sign in with SSO" in process, against a real issuer on loopback: the
redirect carries PKCE, state and nonce, the state travels in a sealed HttpOnly cookie, the
callback exchanges the code and lands on the console with a token that opens the admin API; a
wrong state, the issuer's refusal, a replayed code and a user without an admin role are refused
in the error shape."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest
import pytest_asyncio

from tests.servers.oidc_issuer import OidcIssuer
from tests.support.gateway import InProcessGateway, in_process_gateway

CONFIG = """
auth:
  key_secret: "0123456789abcdef0123456789abcdef"
  oidc:
    issuer: "{issuer}"
    audience: {audience}
    console: {console}
  admin_roles: {{admin: {{roles: [raygate-admin]}}, auditor: {{groups: [compliance]}}}}
storage: {{url: "sqlite:///{db}"}}
cache: {{enabled: false}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
"""
CLIENT = "raygate-console"
ANN = {"sub": "ann", "name": "Ann Admin", "roles": ["raygate-admin"]}


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer(audience="raygate") as running:
        running.login_as(ANN)
        yield running


def _config(
    issuer: OidcIssuer,
    tmp_path: Path,
    *,
    audience: str = "raygate",
    console: str = f"{{client_id: {CLIENT}}}",
) -> str:
    return CONFIG.format(
        issuer=issuer.url, audience=audience, console=console, db=tmp_path / "gw.db"
    )


@pytest_asyncio.fixture
async def gateway(issuer: OidcIssuer, tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(_config(issuer, tmp_path)) as gw:
        yield gw


async def _start(gw: InProcessGateway) -> tuple[httpx.Response, str]:
    """`/console/sso/start`: its response and the state cookie it set."""
    start = await gw.http.get("/console/sso/start")
    assert start.status_code == 302, start.text
    name, _, cookie = start.headers["set-cookie"].partition(";")[0].partition("=")
    assert name == "raygate_sso"
    gw.http.cookies.clear()  # sent explicitly below, as the browser would
    return start, cookie


async def _authorize(start: httpx.Response) -> str:
    """What the browser does at the issuer: the path and query it is sent back to."""
    async with httpx.AsyncClient() as browser:
        approved = await browser.get(start.headers["location"])
    assert approved.status_code == 302
    back = urlsplit(approved.headers["location"])
    assert (back.scheme, back.netloc, back.path) == ("http", "gw", "/console/sso/callback")
    return f"{back.path}?{back.query}"


async def _callback(gw: InProcessGateway, path: str, cookie: str | None) -> httpx.Response:
    headers = {"cookie": f"raygate_sso={cookie}"} if cookie is not None else {}
    return await gw.http.get(path, headers=headers)


async def _sign_in(gw: InProcessGateway) -> httpx.Response:
    start, cookie = await _start(gw)
    return await _callback(gw, await _authorize(start), cookie)


def _token(callback: httpx.Response) -> str:
    assert callback.status_code == 302, callback.text
    landed = urljoin("http://gw/console/sso/callback", callback.headers["location"])
    page, _, fragment = landed.partition("#")
    assert page == "http://gw/console/"
    (token,) = parse_qs(fragment)["token"]
    return token


def _error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    error: dict[str, str] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.asyncio
async def test_start_sends_the_browser_to_the_issuer_with_pkce_state_and_nonce(
    gateway: InProcessGateway, issuer: OidcIssuer
) -> None:
    start, cookie = await _start(gateway)
    location = urlsplit(start.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == issuer.authorization_endpoint
    params = {name: values[0] for name, values in parse_qs(location.query).items()}
    assert params["response_type"] == "code"
    assert params["client_id"] == CLIENT
    assert params["redirect_uri"] == "http://gw/console/sso/callback"
    assert params["scope"] == "openid profile email"
    assert params["code_challenge_method"] == "S256"
    assert len(params["code_challenge"]) == 43  # base64url of a SHA-256, unpadded
    assert len(params["state"]) >= 32 and len(params["nonce"]) >= 32
    # The state, verifier and nonce are sealed: none of them can be read from the cookie.
    assert params["state"] not in cookie and params["nonce"] not in cookie
    set_cookie = start.headers["set-cookie"].lower()
    for attribute in ("httponly", "samesite=lax", "path=/console/sso", "max-age=300"):
        assert attribute in set_cookie
    assert "secure" not in set_cookie  # the callback is plain http here
    assert start.headers["cache-control"] == "no-store"
    config = await gateway.http.get("/console/sso/config")
    assert config.json() == {"enabled": True}


@pytest.mark.asyncio
async def test_the_callback_lands_on_the_console_with_a_token_that_opens_the_admin_api(
    gateway: InProcessGateway, issuer: OidcIssuer
) -> None:
    callback = await _sign_in(gateway)
    token = _token(callback)
    assert "max-age=0" in callback.headers["set-cookie"].lower()  # the state is used up
    whoami = await gateway.http.get("/admin/whoami", headers={"authorization": f"Bearer {token}"})
    assert whoami.status_code == 200, whoami.text
    assert (whoami.json()["user"], whoami.json()["roles"]) == ("ann", ["admin"])
    assert len(issuer.authorize_requests) == 1  # and the issuer checked the PKCE verifier


@pytest.mark.asyncio
async def test_a_confidential_client_authenticates_with_its_secret(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    issuer.register_client("confidential", secret="s3cret:with/odd chars")
    console = '{client_id: confidential, client_secret: "${CONSOLE_SECRET}"}'
    config = _config(issuer, tmp_path, console=console)
    env = {"CONSOLE_SECRET": "s3cret:with/odd chars"}
    async with in_process_gateway(config, env=env) as gw:
        _token(await _sign_in(gw))
    issuer.register_client("confidential", secret="another")
    async with in_process_gateway(config, env=env) as gw:
        error = _error(await _sign_in(gw), 401)
    assert error["code"] == "sso_exchange_failed"


@pytest.mark.asyncio
async def test_the_id_token_is_used_when_the_audience_is_the_console_client(
    issuer: OidcIssuer, tmp_path: Path
) -> None:
    # The access token is for "raygate", which this gateway does not accept; the ID token's
    # audience is the client id, which it does.
    async with in_process_gateway(_config(issuer, tmp_path, audience=CLIENT)) as gw:
        token = _token(await _sign_in(gw))
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["aud"] == CLIENT
        whoami = await gw.http.get("/admin/whoami", headers={"authorization": f"Bearer {token}"})
        assert whoami.status_code == 200


@pytest.mark.asyncio
async def test_a_state_that_does_not_match_the_cookie_is_refused(
    gateway: InProcessGateway,
) -> None:
    start, cookie = await _start(gateway)
    path = await _authorize(start)
    query = parse_qs(urlsplit(path).query)
    forged = f"/console/sso/callback?code={query['code'][0]}&state=someone-elses"
    error = _error(await _callback(gateway, forged, cookie), 400)
    assert error["code"] == "invalid_sso_state"
    assert "start again" in error["message"]
    missing = _error(await _callback(gateway, path, None), 400)
    assert missing["code"] == "invalid_sso_state"
    tampered = _error(await _callback(gateway, path, cookie[:-4] + "AAAA"), 400)
    assert tampered["code"] == "invalid_sso_state"


@pytest.mark.asyncio
async def test_the_issuers_refusal_is_reported(
    gateway: InProcessGateway, issuer: OidcIssuer
) -> None:
    issuer.refuse_sign_in("access_denied")
    callback = await _sign_in(gateway)
    error = _error(callback, 401)
    assert error["code"] == "sso_refused"
    assert "access_denied" in error["message"]
    assert "max-age=0" in callback.headers["set-cookie"].lower()


@pytest.mark.asyncio
async def test_a_code_is_exchanged_once(gateway: InProcessGateway) -> None:
    start, cookie = await _start(gateway)
    path = await _authorize(start)
    _token(await _callback(gateway, path, cookie))
    replayed = _error(await _callback(gateway, path, cookie), 401)
    assert replayed["code"] == "sso_exchange_failed"
    assert "invalid_grant" in replayed["message"]


@pytest.mark.asyncio
async def test_a_user_without_an_admin_role_is_refused_with_403(
    gateway: InProcessGateway, issuer: OidcIssuer
) -> None:
    issuer.login_as({"sub": "bob", "roles": ["developer"], "groups": ["engineering"]})
    error = _error(await _sign_in(gateway), 403)
    assert error["code"] == "admin_role_required"
    assert "bob" in error["message"]


@pytest.mark.asyncio
async def test_without_a_console_client_there_is_no_sso(issuer: OidcIssuer, tmp_path: Path) -> None:
    async with in_process_gateway(_config(issuer, tmp_path, console="null")) as gw:
        assert (await gw.http.get("/console/sso/config")).json() == {"enabled": False}
        for path in ("/console/sso/start", "/console/sso/callback?code=x&state=y"):
            assert _error(await gw.http.get(path), 404)["code"] == "sso_not_configured"
    assert issuer.authorize_requests == []


def test_the_issuer_checks_the_pkce_verifier(issuer: OidcIssuer) -> None:
    verifier = "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    query = {
        "client_id": CLIENT,
        "redirect_uri": "http://gw/cb",
        "state": "s",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    approved = httpx.get(issuer.authorization_endpoint, params=query)
    code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "client_id": CLIENT}
    form["redirect_uri"] = "http://gw/cb"
    wrong = httpx.post(issuer.token_endpoint, data={**form, "code_verifier": "w" * 43})
    assert wrong.status_code == 400
