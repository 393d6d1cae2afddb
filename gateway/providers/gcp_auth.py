"""Google OAuth tokens for Vertex AI, through google-auth.

A service-account key file (`gcp.credentials_file`), or else Application Default
Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's user credentials, workload identity,
or the metadata server on Google Cloud. google-auth refreshes over blocking HTTP, so each
refresh runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import Callable
from typing import Any

from gateway.errors import UpstreamError, UpstreamRejected
from gateway.providers.config import GcpSettings
from gateway.providers.token_auth import TokenAuth

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class GoogleCredentialsAuth(TokenAuth):
    """Bearer tokens from google-auth credentials, loaded on first use."""

    def __init__(
        self, settings: GcpSettings, *, name: str, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(clock=clock)
        self._settings = settings
        self._name = name
        self._credentials: Any = None

    async def fetch(self) -> tuple[str, float]:
        """A refreshed token; `UpstreamRejected` when there are no usable credentials or
        Google refuses them, `UpstreamError` when the token endpoint cannot be reached."""
        return await asyncio.to_thread(self._refresh)

    def _refresh(self) -> tuple[str, float]:
        import google.auth
        import google.auth.exceptions
        import google.auth.transport.requests
        from google.oauth2 import service_account

        where = f"provider {self._name!r}"
        try:
            if self._credentials is None:
                if self._settings.credentials_file:
                    self._credentials = service_account.Credentials.from_service_account_file(
                        self._settings.credentials_file, scopes=SCOPES
                    )
                else:
                    self._credentials, _ = google.auth.default(scopes=SCOPES)
            self._credentials.refresh(google.auth.transport.requests.Request())
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise UpstreamRejected(f"no Google credentials for {where}: {exc}") from None
        except google.auth.exceptions.TransportError as exc:
            raise UpstreamError(
                f"cannot reach Google's token endpoint for {where}: {exc}"
            ) from None
        except google.auth.exceptions.RefreshError as exc:
            raise UpstreamRejected(f"Google refused the credentials of {where}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise UpstreamRejected(f"unusable Google credentials for {where}: {exc}") from None
        expiry = self._credentials.expiry  # naive UTC, or None for tokens without one
        expires_at = calendar.timegm(expiry.timetuple()) if expiry else self._clock() + 3600
        return str(self._credentials.token), float(expires_at)
