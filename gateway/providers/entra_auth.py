"""Entra ID (Azure AD) client-credentials tokens for Azure OpenAI.

The OAuth 2.0 client-credentials grant against
`{authority_host}/{tenant_id}/oauth2/v2.0/token`, scope
`https://cognitiveservices.azure.com/.default`: what `azure-identity`'s
`ClientSecretCredential` does, in a few lines and on raygate's own event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from gateway.errors import UpstreamError, UpstreamRejected
from gateway.providers.config import AzureAdSettings
from gateway.providers.token_auth import TokenAuth


class EntraClientCredentials(TokenAuth):
    """Bearer tokens for raygate's app registration, refreshed before they expire."""

    def __init__(
        self,
        settings: AzureAdSettings,
        *,
        name: str,
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(clock=clock)
        self._settings = settings
        self._name = name
        self._url = f"{settings.authority_host.rstrip('/')}/{settings.tenant_id}/oauth2/v2.0/token"
        self._http = httpx.AsyncClient(timeout=timeout)

    async def fetch(self) -> tuple[str, float]:
        """A token from Entra ID; `UpstreamRejected` (502, not retried) when Entra refuses
        the credentials, `UpstreamError` when it cannot be reached."""
        form = {
            "grant_type": "client_credentials",
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret,
            "scope": self._settings.scope,
        }
        try:
            response = await self._http.post(self._url, data=form)
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"cannot get an Entra ID token for provider {self._name!r}: {type(exc).__name__}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or not isinstance(body.get("access_token"), str):
            reason = body.get("error_description") or body.get("error") or response.status_code
            raise UpstreamRejected(
                f"Entra ID refused the client credentials of provider {self._name!r}: {reason}"
            )
        return body["access_token"], self._clock() + float(body.get("expires_in", 3600))

    async def aclose(self) -> None:
        await self._http.aclose()
