"""AWS Signature Version 4 for Bedrock, signed by botocore from the standard credential chain.

Credentials are resolved once, on first use and in a worker thread (the chain may ask the
instance metadata service), then reused: botocore's refreshable credentials renew themselves
(assumed roles, SSO, container and instance credentials) and are frozen per request.
Only `host`, `content-type` and the `x-amz-*` headers are signed, so that nothing httpx adds
or changes on the way can break the signature.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

import httpx
from botocore.auth import SigV4Auth as _BotocoreSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError
from botocore.session import Session

from gateway.errors import UpstreamRejected
from gateway.providers.config import AwsSettings

SIGNING_NAME = "bedrock"
"""Bedrock Runtime's SigV4 service name (its endpoint prefix is `bedrock-runtime`)."""


class SigV4Auth(httpx.Auth):
    """Signs each request for `region` with the provider's AWS credentials."""

    requires_request_body = True

    def __init__(self, settings: AwsSettings, *, name: str, service: str = SIGNING_NAME) -> None:
        if settings.region is None:
            raise ValueError("SigV4 needs a region")
        self._settings = settings
        self._region = settings.region
        self._service = service
        self._name = name
        self._credentials: Credentials | None = None
        self._lock = asyncio.Lock()

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        credentials = await self._frozen_credentials()
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={
                name: value
                for name, value in request.headers.items()
                if name in ("host", "content-type") or name.startswith("x-amz-")
            },
        )
        _BotocoreSigV4(credentials, self._service, self._region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        yield request

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("provider authentication is async only")
        yield request  # pragma: no cover - makes this a generator, as httpx expects

    async def _frozen_credentials(self) -> Any:
        credentials = self._credentials
        if credentials is None:
            async with self._lock:
                if self._credentials is None:
                    self._credentials = await asyncio.to_thread(self._resolve)
            credentials = self._credentials
            assert credentials is not None
        if isinstance(credentials, RefreshableCredentials) and credentials.refresh_needed():
            # A refresh is network I/O (STS, SSO, metadata): keep it off the event loop.
            return await asyncio.to_thread(credentials.get_frozen_credentials)
        return credentials.get_frozen_credentials()

    def _resolve(self) -> Credentials:
        settings = self._settings
        if settings.access_key_id and settings.secret_access_key:
            return Credentials(
                settings.access_key_id, settings.secret_access_key, settings.session_token
            )
        try:
            credentials = Session(profile=settings.profile).get_credentials()
        except BotoCoreError as exc:  # an unknown profile, a partial or unreadable file
            raise UpstreamRejected(
                f"cannot load AWS credentials for provider {self._name!r}: {exc}"
            ) from None
        if credentials is None:
            raise UpstreamRejected(
                f"no AWS credentials for provider {self._name!r}: none in the environment, "
                "the shared credentials and config files, SSO, container or instance metadata"
            )
        return credentials
