"""The adapter for Cohere's v2 API: `/v2/chat` (whole and streamed) and `/v2/embed`."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.errors import UpstreamError
from gateway.protocol.cohere import (
    chat_request_to_cohere,
    cohere_to_chat,
    cohere_to_embeddings,
    embedding_request_to_cohere,
)
from gateway.protocol.cohere_stream import CohereStreamTranslator
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.providers.base import Provider


class CohereProvider(Provider):
    """Command models and Cohere embeddings, with a bearer key (`CO_API_KEY`).

    A stream is complete only at `message-end`; an early end or an error event raises.
    """

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        request = self.conform(request).request
        data = await self.post_json("/v2/chat", chat_request_to_cohere(request))
        try:
            return cohere_to_chat(data, model=request.model)
        except UpstreamError as exc:
            raise type(exc)(f"upstream {self.name!r}: {exc.message}") from None

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        request = self.conform(request).request
        body = {**chat_request_to_cohere(request), "stream": True}
        translator = CohereStreamTranslator(model=request.model, where=f"upstream {self.name!r}")
        async with self.open_stream("/v2/chat", body) as events:
            async for event in events:
                if event.data.strip() == "[DONE]":
                    break
                for chunk in translator.feed(self.parse_event(event)):
                    yield chunk
                if translator.finished:
                    return
        raise UpstreamError(f"stream from {self.name!r} ended before message-end")

    async def embeddings(self, request: EmbeddingRequest) -> EmbeddingResponse:
        request = self.conform(request).request
        data = await self.post_json("/v2/embed", embedding_request_to_cohere(request))
        try:
            return cohere_to_embeddings(data, request=request)
        except UpstreamError as exc:
            raise UpstreamError(f"upstream {self.name!r}: {exc.message}") from None
