"""The adapter for every upstream that speaks OpenAI's wire format (see presets.yaml).

A request that arrived on the gateway's `/v1/responses` (`ResponsesChatRequest`) goes to an
upstream with the Responses API (`responses_api`) natively, as `POST /responses`; its answer
comes back as chat (`responses_upstream.py`), so the rest of the pipeline never knows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.errors import UpstreamError
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.protocol.responses_convert import ResponsesChatRequest
from gateway.protocol.responses_upstream import chat_request_to_responses, response_to_chat
from gateway.protocol.responses_upstream_stream import ResponsesStreamTranslator
from gateway.providers.base import Provider

_M = TypeVar("_M", bound=BaseModel)


class OpenAICompatible(Provider):
    """OpenAI, Mistral, Groq, vLLM, Ollama, ...: the request passes as it is, once conformed
    to the preset's quirks. Legacy completions go through chat where the upstream has no
    `/completions`."""

    def path(self, endpoint: str, model: str) -> str:
        """The path of `endpoint` (Azure's carries the deployment)."""
        return f"/{endpoint}"

    def query(self) -> dict[str, str] | None:
        """Query parameters sent with every call (Azure's api-version)."""
        return None

    def _body(self, request: BaseModel, *, stream: bool) -> dict[str, Any]:
        body = request.model_dump(mode="json", exclude_none=True)
        body["stream"] = stream
        if stream:
            # Always ask for usage: accounting needs it; the API drops it if the client did not.
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        else:
            body.pop("stream_options", None)
        return body

    def _parse(self, model: type[_M], data: Any) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError:
            raise UpstreamError(
                f"upstream {self.name!r} answered in a shape that is not OpenAI's"
            ) from None

    def native_responses(self, request: ChatCompletionRequest) -> bool:
        """Whether `request` goes to the upstream's Responses API rather than chat."""
        return self.preset.responses_api and isinstance(request, ResponsesChatRequest)

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        request = self.conform(request).request
        if self.native_responses(request):
            return await self._responses(request)
        data = await self.post_json(
            self.path("chat/completions", request.model),
            self._body(request, stream=False),
            params=self.query(),
        )
        return self._parse(ChatCompletion, data)

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        request = self.conform(request).request
        if self.native_responses(request):
            async for chunk in self._responses_stream(request):
                yield chunk
            return
        async for data in self._stream("chat/completions", request):
            yield self._parse(ChatCompletionChunk, data)

    async def _responses(self, request: ChatCompletionRequest) -> ChatCompletion:
        body = chat_request_to_responses(request, stream=False)
        data = await self.post_json(self.path("responses", request.model), body)
        try:
            return response_to_chat(data, model=request.model)
        except UpstreamError as exc:
            raise UpstreamError(f"upstream {self.name!r}: {exc.message}") from None

    async def _responses_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        body = chat_request_to_responses(request, stream=True)
        translator = ResponsesStreamTranslator(model=request.model)
        async with self.open_stream(self.path("responses", request.model), body) as events:
            async for event in events:
                data = self.parse_event(event)
                if not isinstance(data, dict):
                    raise UpstreamError(f"upstream {self.name!r} sent a stream event not an object")
                try:
                    chunks = translator.feed(data)
                except UpstreamError as exc:
                    raise UpstreamError(f"upstream {self.name!r}: {exc.message}") from None
                for chunk in chunks:
                    yield chunk
                if translator.finished:
                    return
        raise UpstreamError(f"stream from {self.name!r} ended before response.completed")

    async def completion(self, request: CompletionRequest) -> Completion:
        request = self.conform(request).request
        if "completions" not in self.preset.endpoints:
            return await super().completion(request)
        data = await self.post_json(
            self.path("completions", request.model),
            self._body(request, stream=False),
            params=self.query(),
        )
        return self._parse(Completion, data)

    async def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Completion]:
        request = self.conform(request).request
        if "completions" not in self.preset.endpoints:
            async for chunk in super().completion_stream(request):
                yield chunk
            return
        async for data in self._stream("completions", request):
            yield self._parse(Completion, data)

    async def embeddings(self, request: EmbeddingRequest) -> EmbeddingResponse:
        request = self.conform(request).request
        data = await self.post_json(
            self.path("embeddings", request.model),
            request.model_dump(mode="json", exclude_none=True),
            params=self.query(),
        )
        return self._parse(EmbeddingResponse, data)

    async def _stream(
        self, endpoint: str, request: ChatCompletionRequest | CompletionRequest
    ) -> AsyncIterator[Any]:
        path = self.path(endpoint, request.model)
        body = self._body(request, stream=True)
        async with self.open_stream(path, body, params=self.query()) as events:
            async for event in events:
                if event.data.strip() == "[DONE]":
                    return
                data = self.parse_event(event)
                if isinstance(data, dict) and "error" in data:
                    raise self.stream_error(data["error"])
                yield data
        raise UpstreamError(f"stream from {self.name!r} ended before [DONE]")

    def stream_error(self, error: Any) -> UpstreamError:
        """The error an `{"error": ...}` event in a stream stands for."""
        return UpstreamError(f"upstream {self.name!r} failed mid-stream: {_message(error)}")


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)
