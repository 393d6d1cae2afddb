"""The adapter for every upstream that speaks OpenAI's wire format (see presets.yaml)."""

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
from gateway.providers.base import Provider

_M = TypeVar("_M", bound=BaseModel)


class OpenAICompatible(Provider):
    """OpenAI, Azure OpenAI, Mistral, Groq, vLLM, Ollama, ...: the request passes as it is."""

    def _path(self, endpoint: str, model: str) -> str:
        if self.preset.url_style == "azure":
            return f"/{model}/{endpoint}"
        return f"/{endpoint}"

    def _params(self) -> dict[str, str] | None:
        if self.preset.url_style == "azure":
            return {"api-version": self.config.api_version or "2024-10-21"}
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

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        self.check_params(request.set_params())
        data = await self.post_json(
            self._path("chat/completions", request.model),
            self._body(request, stream=False),
            params=self._params(),
        )
        return self._parse(ChatCompletion, data)

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        self.check_params(request.set_params())
        async for data in self._stream("chat/completions", request):
            yield self._parse(ChatCompletionChunk, data)

    async def completion(self, request: CompletionRequest) -> Completion:
        self.check_params(request.set_params())
        data = await self.post_json(
            self._path("completions", request.model),
            self._body(request, stream=False),
            params=self._params(),
        )
        return self._parse(Completion, data)

    async def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Completion]:
        self.check_params(request.set_params())
        async for data in self._stream("completions", request):
            yield self._parse(Completion, data)

    async def embeddings(self, request: EmbeddingRequest) -> EmbeddingResponse:
        self.check_params(request.set_params())
        data = await self.post_json(
            self._path("embeddings", request.model),
            request.model_dump(mode="json", exclude_none=True),
            params=self._params(),
        )
        return self._parse(EmbeddingResponse, data)

    async def _stream(
        self, endpoint: str, request: ChatCompletionRequest | CompletionRequest
    ) -> AsyncIterator[Any]:
        path = self._path(endpoint, request.model)
        body = self._body(request, stream=True)
        async with self.open_stream(path, body, params=self._params()) as events:
            async for event in events:
                if event.data.strip() == "[DONE]":
                    return
                data = self.parse_event(event)
                if isinstance(data, dict) and "error" in data:
                    raise UpstreamError(
                        f"upstream {self.name!r} failed mid-stream: {_message(data['error'])}"
                    )
                yield data
        raise UpstreamError(f"stream from {self.name!r} ended before [DONE]")


def _message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)
