"""What every provider adapter shares: one pooled HTTP client, timeouts, SSE, error mapping.

An adapter speaks one wire format. It takes the gateway's canonical request (OpenAI chat,
with `model` already set to the upstream's model name) and returns canonical responses or
chunks, whatever its upstream speaks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.errors import (
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    RateLimited,
    UnsupportedParameter,
    UpstreamError,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.providers import completions_bridge
from gateway.providers.config import DropParams, ProviderConfig
from gateway.providers.entra_auth import EntraClientCredentials
from gateway.providers.params import Conformed, Request, conform, merge_drop
from gateway.providers.token_auth import TokenAuth

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event."""

    event: str | None
    data: str


class Provider(ABC):
    """An upstream LLM API behind one pooled `httpx.AsyncClient`."""

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.preset = config.resolved_preset
        self.timeouts = config.timeouts
        self._auth = self.request_auth()
        self._client = httpx.AsyncClient(
            base_url=(self.preset.base_url or "").rstrip("/"),
            headers={**self.auth_headers(config.resolved_api_key()), **config.headers},
            auth=self._auth,
            timeout=httpx.Timeout(
                connect=self.timeouts.connect,
                read=self.timeouts.first_token,
                write=self.timeouts.first_token,
                pool=self.timeouts.connect,
            ),
            # A connection the upstream closes for idleness at the moment the gateway sends
            # on it fails the request ("server disconnected"); closing it first avoids that.
            limits=httpx.Limits(
                max_connections=config.max_connections,
                max_keepalive_connections=config.max_connections,
                keepalive_expiry=config.idle_connection_s,
            ),
            transport=transport,
        )

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Headers that carry the key, in the preset's style (none when Entra ID tokens are
        configured instead)."""
        if not api_key or self.preset.auth == "none" or self.config.azure_ad is not None:
            return {}
        header = {
            "bearer": ("authorization", f"Bearer {api_key}"),
            "api-key": ("api-key", api_key),
            "x-api-key": ("x-api-key", api_key),
            "x-goog-api-key": ("x-goog-api-key", api_key),
        }[self.preset.auth]
        return dict([header])

    def request_auth(self) -> httpx.Auth | None:
        """Per-request authentication (signatures, OAuth tokens), or None for a static key.

        Entra ID client credentials (`azure_ad`) work for any OpenAI-style upstream that
        takes them; the cloud adapters add their own (SigV4, Google OAuth).
        """
        if self.config.azure_ad is not None:
            return EntraClientCredentials(self.config.azure_ad, name=self.name)
        return None

    @property
    def auth(self) -> httpx.Auth | None:
        """The per-request authentication every call carries (health checks share it)."""
        return self._auth

    async def aclose(self) -> None:
        """Close the connection pool (and the token client, when there is one)."""
        await self._client.aclose()
        if isinstance(self._auth, TokenAuth):
            await self._auth.aclose()

    # --- the canonical surface ----------------------------------------------------------------

    @abstractmethod
    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        """A whole chat completion."""

    @abstractmethod
    def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
        """A streamed chat completion; ends with a usage chunk when the upstream reports one."""

    async def completion(self, request: CompletionRequest) -> Completion:
        """A legacy completion; by default answered through chat."""
        chat = await self.chat(completions_bridge.to_chat(request))
        return completions_bridge.from_chat(chat)

    async def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Completion]:
        """A streamed legacy completion; by default answered through chat."""
        async for chunk in self.chat_stream(completions_bridge.to_chat(request)):
            yield completions_bridge.from_chat_chunk(chunk)

    async def embeddings(self, request: EmbeddingRequest) -> EmbeddingResponse:
        """Embeddings; most providers that are not OpenAI-compatible have none."""
        raise UnsupportedParameter(
            f"provider {self.name!r} ({self.preset.kind}) does not offer embeddings",
            param="model",
        )

    def check_params(self, params: set[str]) -> None:
        """Refuse parameters this upstream is known to reject (by name, whatever the value)."""
        for param in sorted(params & set(self.preset.unsupported_params)):
            raise UnsupportedParameter(
                f"parameter {param!r} is not supported by provider {self.name!r}", param=param
            )

    def conform(self, request: Request, *, drop: DropParams | None = None) -> Conformed[Request]:
        """The request as this upstream takes it: renamed where that loses nothing, without
        the parameters this provider's `drop_params` (or `drop`, an alias's) lets go, and
        `UnsupportedParameter` for any other it cannot honour (see `params.py`)."""
        return conform(
            request,
            self.preset,
            provider=self.name,
            drop=merge_drop(self.config.drop_params, drop),
        )

    # --- HTTP plumbing for adapters -----------------------------------------------------------

    async def post_json(
        self, path: str, body: dict[str, Any], *, params: dict[str, str] | None = None
    ) -> Any:
        """POST a JSON body and return the parsed JSON answer, or raise a GatewayError."""
        response = await self.post(path, body, params=params)
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"upstream {self.name!r} sent a body that is not JSON") from None

    async def post(
        self, path: str, body: dict[str, Any], *, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST a JSON body within the total timeout; the (read) response of a success, or
        the GatewayError its status maps to."""
        timeout = httpx.Timeout(
            connect=self.timeouts.connect,
            read=self.timeouts.total,
            write=self.timeouts.total,
            pool=self.timeouts.connect,
        )
        try:
            async with asyncio.timeout(self.timeouts.total):
                response = await self._client.post(path, json=body, params=params, timeout=timeout)
        except TimeoutError:
            raise UpstreamTimeout(
                f"upstream {self.name!r} did not answer within {self.timeouts.total:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            raise self.status_error(response.status_code, response.text, response.headers)
        return response

    @asynccontextmanager
    async def open_stream(
        self, path: str, body: dict[str, Any], *, params: dict[str, str] | None = None
    ) -> AsyncIterator[AsyncIterator[SSEEvent]]:
        """POST and yield an iterator of SSE events, with first-token and total deadlines."""
        async with self.open_response(path, body, params=params) as (response, deadline):
            yield self._sse_events(response, deadline)

    @asynccontextmanager
    async def open_response(
        self, path: str, body: dict[str, Any], *, params: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[httpx.Response, float]]:
        """POST for a streamed answer; yields the response once its status is a success, and
        the monotonic deadline of the whole stream. An error status raises its GatewayError."""
        deadline = time.monotonic() + self.timeouts.total
        request = self._client.build_request("POST", path, json=body, params=params)
        try:
            async with asyncio.timeout(self.timeouts.first_token):
                response = await self._client.send(request, stream=True)
        except TimeoutError:
            raise UpstreamTimeout(
                f"upstream {self.name!r} sent no response within {self.timeouts.first_token:g}s"
            ) from None
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from None
        try:
            if response.status_code >= 400:
                text = (await response.aread()).decode(errors="replace")
                raise self.status_error(response.status_code, text, response.headers)
            yield response, deadline
        finally:
            await response.aclose()

    async def timed(self, items: AsyncIterator[Any], deadline: float) -> AsyncIterator[Any]:
        """The items of a streamed body, each within the first-token timeout and all before
        `deadline`; a stall or a broken connection raises."""
        while True:
            budget = min(self.timeouts.first_token, deadline - time.monotonic())
            try:
                async with asyncio.timeout(max(budget, 0)):
                    item = await anext(items)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise UpstreamTimeout(f"stream from {self.name!r} stalled") from None
            except httpx.HTTPError as exc:
                raise UpstreamError(f"stream from {self.name!r} broke: {exc}") from None
            yield item

    async def _sse_events(
        self, response: httpx.Response, deadline: float
    ) -> AsyncIterator[SSEEvent]:
        event: str | None = None
        data: list[str] = []
        async for line in self.timed(response.aiter_lines(), deadline):
            if line == "":
                if data:
                    yield SSEEvent(event, "\n".join(data))
                event, data = None, []
            elif line.startswith(":"):
                continue
            else:
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "data":
                    data.append(value)
                elif field == "event":
                    event = value

    def parse_event(self, event: SSEEvent) -> Any:
        """The JSON in an event's data, or an UpstreamError naming the bad chunk."""
        try:
            return json.loads(event.data)
        except ValueError:
            raise UpstreamError(
                f"upstream {self.name!r} sent a malformed stream chunk: {event.data[:80]!r}"
            ) from None

    def _transport_error(self, exc: httpx.HTTPError) -> GatewayError:
        if isinstance(exc, httpx.TimeoutException):
            if isinstance(exc, httpx.PoolTimeout):
                return UpstreamUnavailable(f"no free connection to upstream {self.name!r}")
            return UpstreamTimeout(f"upstream {self.name!r} timed out ({type(exc).__name__})")
        if isinstance(exc, httpx.ConnectError):
            return UpstreamError(f"cannot connect to upstream {self.name!r}")
        return UpstreamError(f"upstream {self.name!r} failed: {type(exc).__name__}: {exc}")

    def status_error(self, status: int, text: str, headers: httpx.Headers) -> GatewayError:
        """Map an upstream HTTP error to the error the client sees."""
        message = _error_message(text) or f"HTTP {status}"
        where = f"upstream {self.name!r}"
        if status in (400, 422):
            return InvalidRequest(f"{where}: {message}")
        if status in (401, 403):
            return UpstreamRejected(f"{where} rejected raygate's credentials ({status}): {message}")
        if status == 404:
            return UpstreamRejected(f"{where}: {message}")
        if status == 413:
            return PayloadTooLarge(f"{where}: {message}")
        if status == 429:
            retry = {"retry-after": headers["retry-after"]} if "retry-after" in headers else {}
            return RateLimited(f"{where} is rate limiting: {message}", headers=retry)
        if status in (408, 504):
            return UpstreamTimeout(f"{where} timed out ({status}): {message}")
        if status in (503, 529):
            return UpstreamUnavailable(f"{where} is unavailable ({status}): {message}")
        return UpstreamError(f"{where} failed ({status}): {message}")


def _error_message(text: str) -> str | None:
    try:
        body = json.loads(text)
    except ValueError:
        return text.strip()[:200] or None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    # AWS and Cohere put the message at the top level.
    for key in ("message", "Message"):
        if isinstance(body, dict) and isinstance(body.get(key), str):
            return str(body[key])
    return None
