"""The adapter for Anthropic's Messages API (`POST /v1/messages`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from gateway.errors import GatewayError, UpstreamError, UpstreamUnavailable
from gateway.protocol.anthropic_upstream import anthropic_to_chat, chat_request_to_anthropic
from gateway.protocol.anthropic_upstream_stream import AnthropicStreamTranslator
from gateway.protocol.openai import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from gateway.providers.base import Provider
from gateway.providers.config import ProviderConfig

DEFAULT_API_VERSION = "2023-06-01"
_PATH = "/v1/messages"


class AnthropicProvider(Provider):
    """Claude models: chat requests are translated to Messages and the answers back.

    Every request carries `anthropic-version` (the config's `api_version`, else 2023-06-01).
    A stream is complete only at `message_stop`: an `error` event or an early end raises.
    """

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(name, config, transport=transport)
        self._client.headers["anthropic-version"] = config.api_version or DEFAULT_API_VERSION

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """`x-api-key`, also for a provider configured by `kind` alone (no preset)."""
        # Without a preset the resolved preset's auth is the generic default, bearer, which
        # Anthropic's API does not accept.
        if api_key and self.config.preset is None and self.preset.auth == "bearer":
            return {"x-api-key": api_key}
        return super().auth_headers(api_key)

    def messages_call(self, body: dict[str, Any], *, stream: bool) -> tuple[str, dict[str, Any]]:
        """The path and body of one Messages call (Vertex AI's differ)."""
        return _PATH, body

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        request = self.conform(request).request
        body = chat_request_to_anthropic(request)
        body.pop("stream", None)
        data = await self.post_json(*self.messages_call(body, stream=False))
        if not isinstance(data, dict):
            raise UpstreamError(f"upstream {self.name!r} answered with something not an object")
        try:
            return anthropic_to_chat(data, model=request.model)
        except UpstreamError as exc:
            raise UpstreamError(f"upstream {self.name!r}: {exc.message}") from None

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        request = self.conform(request).request
        body = {**chat_request_to_anthropic(request), "stream": True}
        translator = AnthropicStreamTranslator(model=request.model)
        async with self.open_stream(*self.messages_call(body, stream=True)) as events:
            async for event in events:
                data = self.parse_event(event)
                if not isinstance(data, dict):
                    raise UpstreamError(f"upstream {self.name!r} sent a stream event not an object")
                if data.get("type") == "error" or event.event == "error":
                    raise self._stream_error(data)
                try:
                    chunks = translator.feed(data)
                except UpstreamError as exc:
                    raise UpstreamError(f"upstream {self.name!r}: {exc.message}") from None
                for chunk in chunks:
                    yield chunk
                if translator.finished:
                    return
        raise UpstreamError(f"stream from {self.name!r} ended before message_stop")

    def _stream_error(self, data: dict[str, Any]) -> GatewayError:
        error = data.get("error")
        kind = error.get("type") if isinstance(error, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        text = f"upstream {self.name!r} failed mid-stream ({kind}): {message or 'no message'}"
        if kind == "overloaded_error":
            return UpstreamUnavailable(text)
        return UpstreamError(text)
