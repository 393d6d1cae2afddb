"""Bearer tokens that expire: fetched on demand, refreshed before they lapse, and once more
when the upstream says 401 (a token revoked or rotated early)."""

from __future__ import annotations

import asyncio
import time
from abc import abstractmethod
from collections.abc import AsyncGenerator, Callable, Generator

import httpx

REFRESH_MARGIN_S = 300.0
"""A token this close to its expiry is replaced before use: a request may take minutes."""


class TokenAuth(httpx.Auth):
    """An `httpx.Auth` that sends `Authorization: Bearer <token>` from `fetch()`.

    One fetch at a time per provider (a lock), so a burst of requests at expiry refreshes the
    token once. `clock` is injectable (epoch seconds) for tests of expiry.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0
        """How many tokens were fetched (for status pages and tests)."""

    @abstractmethod
    async def fetch(self) -> tuple[str, float]:
        """A fresh token and its expiry (epoch seconds); raises a GatewayError on failure."""

    async def token(self, *, stale: str | None = None) -> str:
        """A token valid for at least `REFRESH_MARGIN_S` more; a new one if `stale` (the
        token an upstream just refused) is still the current one."""
        async with self._lock:
            expiring = self._clock() >= self._expires_at - REFRESH_MARGIN_S
            if self._token is None or expiring or self._token == stale:
                self._token, self._expires_at = await self.fetch()
                self.fetches += 1
            return self._token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            request.headers["authorization"] = f"Bearer {await self.token(stale=token)}"
            yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("provider authentication is async only")
        yield request  # pragma: no cover - makes this a generator, as httpx expects

    async def aclose(self) -> None:
        """Release what fetching tokens holds (connection pools)."""
