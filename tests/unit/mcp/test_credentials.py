"""The OAuth client-credentials token: fetched once, reused until shortly before it expires,
and a token endpoint's refusal is an upstream error (a real token endpoint, in process)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import UpstreamError
from gateway.mcp.config import OAuthClientCredentials
from gateway.mcp.credentials import ClientCredentialsToken


class Idp:
    def __init__(self) -> None:
        self.issued = 0
        self.forms: list[dict[str, str]] = []

    async def token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.forms.append(form)
        if request.headers.get("authorization") != "Basic cmF5Z2F0ZTpzM2NyZXQ=":  # raygate:s3cret
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        self.issued += 1
        return JSONResponse({"access_token": f"token-{self.issued}", "expires_in": 100})


def source(idp: Idp, now: list[float], secret: str = "s3cret") -> ClientCredentialsToken:
    config = OAuthClientCredentials(
        token_url="http://idp/token",
        client_id="raygate",
        client_secret=secret,
        scope="tools.read",
        refresh_margin_s=10,
    )
    app = Starlette(routes=[Route("/token", idp.token, methods=["POST"])])
    return ClientCredentialsToken(
        config, clock=lambda: now[0], transport=httpx.ASGITransport(app=app)
    )


@pytest.mark.asyncio
async def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    idp, now = Idp(), [1000.0]
    tokens = source(idp, now)
    assert [await tokens.token(), await tokens.token()] == ["token-1", "token-1"]
    now[0] += 89  # 100 s lifetime, 10 s margin: still good
    assert await tokens.token() == "token-1"
    now[0] += 1
    assert await tokens.token() == "token-2"
    assert idp.forms[0] == {"grant_type": "client_credentials", "scope": "tools.read"}


@pytest.mark.asyncio
async def test_a_refused_client_is_an_upstream_error() -> None:
    tokens = source(Idp(), [0.0], secret="wrong")
    with pytest.raises(UpstreamError, match="token endpoint failed"):
        await tokens.token()
