"""The adapter for Google's Gemini API (`generateContent`, SSE streams, batch embeddings)."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from gateway.errors import GatewayError, RateLimited, UpstreamError
from gateway.protocol.gemini_embeddings import embedding_request_to_gemini, gemini_to_embeddings
from gateway.protocol.gemini_request import chat_request_to_gemini
from gateway.protocol.gemini_response import GeminiStreamTranslator, gemini_to_chat
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.providers.base import Provider


class GeminiProvider(Provider):
    """Gemini models: chat requests are translated to `generateContent` and answers back.

    A stream has no terminator; it is complete once every candidate carried a finishReason,
    and one that ends before that raises `UpstreamError`. Embeddings use
    `batchEmbedContents`.
    """

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        request = self.conform(request).request
        body = chat_request_to_gemini(request)
        data = await self.post_json(self._path(request.model, "generateContent"), body)
        try:
            return gemini_to_chat(data, model=request.model)
        except UpstreamError as exc:
            raise self._named(exc) from None

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        request = self.conform(request).request
        body = chat_request_to_gemini(request)
        path = self._path(request.model, "streamGenerateContent")
        translator = GeminiStreamTranslator(model=request.model)
        async with self.open_stream(path, body, params={"alt": "sse"}) as events:
            async for event in events:
                data = self.parse_event(event)
                if isinstance(data, dict) and "error" in data:
                    raise self._stream_error(data["error"], event.data)
                try:
                    chunks = translator.feed(data)
                except UpstreamError as exc:
                    raise self._named(exc) from None
                for chunk in chunks:
                    yield chunk
        if not translator.finished:
            raise UpstreamError(f"stream from {self.name!r} ended before a finishReason")
        yield translator.usage_chunk()

    async def embeddings(self, request: EmbeddingRequest) -> EmbeddingResponse:
        request = self.conform(request).request
        body = embedding_request_to_gemini(request)
        data = await self.post_json(self._path(request.model, "batchEmbedContents"), body)
        try:
            return gemini_to_embeddings(data, request=request)
        except UpstreamError as exc:
            raise self._named(exc) from None

    def _path(self, model: str, action: str) -> str:
        """The path of `action` on `model` (Vertex AI's differs)."""
        return f"/v1beta/models/{quote(model.removeprefix('models/'), safe='')}:{action}"

    def status_error(self, status: int, text: str, headers: httpx.Headers) -> GatewayError:
        """The base mapping, plus Retry-After from Gemini's `RetryInfo` on a 429."""
        error = super().status_error(status, text, headers)
        if isinstance(error, RateLimited) and "retry-after" not in error.headers:
            delay = _retry_delay(text)
            if delay is not None:
                error.headers["retry-after"] = delay
        return error

    def _named(self, exc: UpstreamError) -> UpstreamError:
        return UpstreamError(f"upstream {self.name!r}: {exc.message}")

    def _stream_error(self, error: Any, text: str) -> GatewayError:
        # Gemini reports mid-stream failures as `{"error": {"code", "message", "status"}}`:
        # map them exactly like the same status at the start of the answer.
        code = error.get("code") if isinstance(error, dict) else None
        status = code if isinstance(code, int) and 400 <= code <= 599 else 500
        return self.status_error(status, text, httpx.Headers())


def _retry_delay(text: str) -> str | None:
    # Gemini sends no Retry-After header: the delay is a google.rpc.RetryInfo detail
    # whose retryDelay is a protobuf Duration in JSON ("35s", "1.5s").
    try:
        body = json.loads(text)
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        if str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = str(detail.get("retryDelay", "")).removesuffix("s")
            try:
                return str(max(math.ceil(float(delay)), 0))
            except ValueError:
                return None
    return None
