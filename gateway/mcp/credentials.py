"""The gateway's credentials for upstream MCP servers: a static bearer token, or an OAuth
client-credentials token fetched and cached until shortly before it expires.

They are added to each request the gateway's own MCP client sends upstream (an `httpx2.Auth`,
the HTTP client the `mcp` SDK uses), so a token refreshed mid-session is used from the next
request on. A caller never sees them: they exist only between the gateway and the upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

import httpx
import httpx2

from gateway.errors import UpstreamError
from gateway.mcp.config import OAuthClientCredentials, UpstreamAuth

_DEFAULT_LIFETIME_S = 300.0  # a token response without expires_in: assume this long


class ClientCredentialsToken:
    """An OAuth 2.0 client-credentials access token, fetched on first use and again shortly
    before it expires (one fetch at a time, however many calls wait for it)."""

    def __init__(
        self,
        config: OAuthClientCredentials,
        *,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._transport = transport
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def token(self) -> str:
        """A current access token (UpstreamError when the token endpoint refuses or fails)."""
        async with self._lock:
            if self._token is None or self._clock() >= self._expires_at:
                await self._fetch()
            assert self._token is not None
            return self._token

    async def _fetch(self) -> None:
        form = {"grant_type": "client_credentials"}
        if self._config.scope:
            form["scope"] = self._config.scope
        auth = (self._config.client_id, self._config.client_secret)
        try:
            async with httpx.AsyncClient(transport=self._transport, timeout=10.0) as client:
                response = await client.post(self._config.token_url, data=form, auth=auth)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            token = body["access_token"]
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            raise UpstreamError(f"the MCP upstream's token endpoint failed: {exc!r}") from exc
        lifetime = float(body.get("expires_in") or _DEFAULT_LIFETIME_S)
        self._token = str(token)
        self._expires_at = self._clock() + max(lifetime - self._config.refresh_margin_s, 0.0)
        self.fetches += 1


class BearerAuth(httpx2.Auth):
    """Sets `Authorization: Bearer <token>` on every request to the upstream."""

    def __init__(self, token: str | ClientCredentialsToken) -> None:
        self._token = token

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        token = self._token if isinstance(self._token, str) else await self._token.token()
        request.headers["authorization"] = f"Bearer {token}"
        yield request


def upstream_auth(config: UpstreamAuth) -> BearerAuth | None:
    """The credential an upstream's config names (None: the gateway sends none)."""
    if config.bearer_token:
        return BearerAuth(config.bearer_token)
    if config.oauth is not None:
        return BearerAuth(ClientCredentialsToken(config.oauth))
    return None
