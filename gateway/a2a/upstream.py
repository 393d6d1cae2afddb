"""One upstream A2A agent: its card (fetched and kept for a while, or given inline), and its
JSON-RPC endpoint called over one pooled connection, whole or as an event stream.

Every failure to reach the agent or to read what it sent is an `UpstreamError` (502), or an
`UpstreamTimeout` (504); a stream that breaks, or ends before its task reached a final state,
raises one too, so that the caller's stream ends with an error event, never cleanly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from contextlib import aclosing
from typing import Any

import httpx

from gateway.a2a.cards import AgentCardView
from gateway.a2a.config import AgentConfig
from gateway.errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable
from gateway.protocol.a2a import JsonObject, is_final

CARD_PATH = "/.well-known/agent-card.json"
# What of the caller's request headers an agent may see: the protocol's own.
FORWARDED_HEADERS = ("a2a-version", "a2a-extensions", "x-a2a-extensions")


class AgentUpstream:
    """Calls one agent. `clock` (seconds) decides when a fetched card is stale."""

    def __init__(
        self,
        name: str,
        config: AgentConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self._clock = clock
        timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport)
        self._card: AgentCardView | None = None
        self._card_at = 0.0
        self._card_lock = asyncio.Lock()

    async def card(self) -> AgentCardView:
        """The agent's card: the inline one, or the fetched one while it is fresh."""
        if self.config.card is not None:
            if self._card is None:
                self._card = AgentCardView.parse(self.config.card, name=self.name)
            return self._card
        async with self._card_lock:
            fresh = self._clock() - self._card_at < self.config.card_ttl_s
            if self._card is None or not fresh:
                data = await self._get_json(self.config.url.rstrip("/") + CARD_PATH)
                self._card = AgentCardView.parse(data, name=self.name)
                self._card_at = self._clock()
            return self._card

    async def rpc_url(self) -> str:
        """Where the agent's JSON-RPC endpoint is."""
        if self.config.rpc_url is not None:
            return self.config.rpc_url
        return (await self.card()).interface.url

    def headers(self, caller: Mapping[str, str], identity: Mapping[str, str]) -> dict[str, str]:
        """The headers of a call: the protocol's from the caller, the gateway's credential
        for the agent, and the caller's identity where the agent is configured to get it."""
        out = {k: v for k, v in caller.items() if k.lower() in FORWARDED_HEADERS}
        out["content-type"] = "application/json"
        if self.config.token:
            out["authorization"] = f"Bearer {self.config.token}"
        out.update(identity)
        return out

    async def call(self, body: JsonObject, headers: Mapping[str, str]) -> JsonObject:
        """One JSON-RPC call answered whole: the agent's JSON-RPC response object."""
        url = await self.rpc_url()
        try:
            response = await self._http.post(url, json=body, headers=dict(headers))
        except httpx.TimeoutException:
            raise self._timeout() from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        self._check_status(response)
        return self._response_object(response.content)

    async def stream(
        self, body: JsonObject, headers: Mapping[str, str]
    ) -> AsyncGenerator[JsonObject, None]:
        """One JSON-RPC call answered as server-sent events: each event's JSON-RPC response
        object, in order. An error event is the last one; an agent that answers with one JSON
        response instead of a stream (an error before it started) gives that one."""
        url = await self.rpc_url()
        stream_headers = {**headers, "accept": "text/event-stream"}
        request = self._http.build_request("POST", url, json=body, headers=stream_headers)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TimeoutException:
            raise self._timeout() from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        try:
            if response.status_code >= 400:
                await response.aread()
            self._check_status(response)
            if "text/event-stream" not in response.headers.get("content-type", ""):
                yield self._response_object(await response.aread())
                return
            ended = False
            async with aclosing(_sse_data(response)) as events:
                async for data in events:
                    event = self._response_object(data.encode())
                    yield event
                    if "error" in event or is_final(event.get("result")):
                        ended = True
                        break
            if not ended:
                raise UpstreamError(
                    f"The agent {self.name!r} ended its stream before the task reached a "
                    "final state."
                )
        except httpx.TimeoutException:
            raise self._timeout() from None
        except httpx.HTTPError as exc:
            raise UpstreamError(f"The agent {self.name!r} broke off its stream: {exc}") from None
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    async def _get_json(self, url: str) -> Any:
        headers = self.headers({}, {})
        headers.pop("content-type")
        try:
            response = await self._http.get(url, headers=headers)
        except httpx.TimeoutException:
            raise self._timeout() from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        self._check_status(response)
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(
                f"The agent {self.name!r} served a card that is not JSON."
            ) from None

    def _check_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status < 400:
            return
        message = f"The agent {self.name!r} answered HTTP {status}."
        if status in (502, 503, 504, 429):
            raise UpstreamUnavailable(message)
        raise UpstreamError(message)

    def _response_object(self, raw: bytes) -> JsonObject:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise UpstreamError(f"The agent {self.name!r} answered with invalid JSON.") from None
        if not isinstance(body, dict) or not ("result" in body or "error" in body):
            raise UpstreamError(
                f"The agent {self.name!r} answered with something other than a JSON-RPC response."
            )
        return body

    def _timeout(self) -> UpstreamTimeout:
        return UpstreamTimeout(
            f"The agent {self.name!r} did not answer within {self.config.timeout_s:g} s."
        )

    def _unreachable(self, exc: httpx.HTTPError) -> UpstreamError:
        return UpstreamError(f"The agent {self.name!r} could not be reached: {exc}")


async def _sse_data(response: httpx.Response) -> AsyncGenerator[str, None]:
    """The `data` of each server-sent event (its lines joined); comments and the other
    fields are read past."""
    lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if lines:
                yield "\n".join(lines)
            lines = []
        elif line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)
