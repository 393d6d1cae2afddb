"""AWS Bedrock: Converse / ConverseStream for chat, InvokeModel for embeddings.

Each provider is one region (`aws.region`): requests go to
`https://bedrock-runtime.{region}.amazonaws.com` and are signed with SigV4 by botocore from
the standard AWS credential chain (`sigv4_auth.py`), or carry a Bedrock API key
(`AWS_BEARER_TOKEN_BEDROCK`) as a bearer token when one is configured.

A target's model is a model id (`anthropic.claude-3-5-haiku-20241022-v1:0`), an inference
profile id (`us.anthropic...`) or an ARN (provisioned throughput, application inference
profiles); with `aws.inference_profile` set, bare model ids are sent through that geography's
cross-region inference profile (`eu.` + id), which Bedrock routes to any region of the
geography with capacity. Streams arrive in AWS's event-stream framing (`eventstream.py`); an
exception event mid-stream raises the error it names, and a stream that ends before
`messageStop` raises.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import quote

import httpx

from gateway.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from gateway.protocol.bedrock import chat_request_to_converse, converse_to_chat
from gateway.protocol.bedrock_embeddings import (
    cohere_body,
    cohere_vectors,
    embedding_family,
    texts_of,
    titan_body,
    titan_vector,
)
from gateway.protocol.bedrock_stream import ConverseStreamTranslator
from gateway.protocol.cohere import cohere_to_embeddings
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.providers.base import Provider
from gateway.providers.eventstream import messages
from gateway.providers.sigv4_auth import SigV4Auth

GEOGRAPHIES = ("us", "eu", "apac", "us-gov", "global", "jp", "au", "ca")
"""Prefixes of Bedrock's cross-region inference profile ids."""
TITAN_CONCURRENCY = 8
"""Titan embeds one text per call: a batch is sent this many calls at a time."""

_STREAM_ERRORS: dict[str, type[GatewayError]] = {
    "throttlingException": RateLimited,
    "serviceUnavailableException": UpstreamUnavailable,
    "validationException": InvalidRequest,
    "modelStreamErrorException": UpstreamError,
    "internalServerException": UpstreamError,
}


class BedrockProvider(Provider):
    """Models on AWS Bedrock in one region, through the Converse API."""

    def request_auth(self) -> httpx.Auth | None:
        """SigV4 from the AWS credential chain, unless a Bedrock API key is configured."""
        if self.config.resolved_api_key() or self.config.aws is None:
            return None
        return SigV4Auth(self.config.aws, name=self.name)

    def model_id(self, model: str) -> str:
        """The id Bedrock is called with: through the configured inference profile when the
        model is a bare model id."""
        profile = self.config.aws.inference_profile if self.config.aws else None
        if profile is None or model.startswith("arn:") or model.split(".", 1)[0] in GEOGRAPHIES:
            return model
        return f"{profile}.{model}"

    def _path(self, model: str, operation: str) -> str:
        return f"/model/{quote(self.model_id(model), safe='')}/{operation}"

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        request = self.conform(request).request
        body = chat_request_to_converse(request)
        data = await self.post_json(self._path(request.model, "converse"), body)
        try:
            return converse_to_chat(data, model=request.model)
        except UpstreamError as exc:
            raise UpstreamError(f"upstream {self.name!r}: {exc.message}") from None

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        request = self.conform(request).request
        body = chat_request_to_converse(request)
        translator = ConverseStreamTranslator(model=request.model)
        where = f"upstream {self.name!r}"
        path = self._path(request.model, "converse-stream")
        async with self.open_response(path, body) as (response, deadline):
            frames = self.timed(response.aiter_bytes(), deadline)
            async for message in messages(frames, where=where):
                if message.message_type != "event":
                    raise self._stream_error(message.name, message.payload)
                try:
                    chunks = translator.feed(message.name, message.payload)
                except UpstreamError as exc:
                    raise UpstreamError(f"{where}: {exc.message}") from None
                for chunk in chunks:
                    yield chunk
        if not translator.finished:
            raise UpstreamError(f"stream from {self.name!r} ended before messageStop")

    async def embeddings(self, request: EmbeddingRequest) -> EmbeddingResponse:
        request = self.conform(request).request
        texts = texts_of(request)
        path = self._path(request.model, "invoke")
        if embedding_family(self.model_id(request.model)) == "cohere":
            response = await self.post(path, cohere_body(texts, request))
            vectors = cohere_vectors(self._json(response), len(texts))
            tokens = response.headers.get("x-amzn-bedrock-input-token-count", "0")
            return cohere_to_embeddings(
                {"embeddings": vectors, "meta": {"billed_units": {"input_tokens": tokens}}},
                request=request,
            )
        limit = asyncio.Semaphore(TITAN_CONCURRENCY)

        async def one(text: str) -> tuple[list[float], int]:
            async with limit:
                response = await self.post(path, titan_body(text, request))
            return titan_vector(self._json(response))

        results = await asyncio.gather(*(one(text) for text in texts))
        tokens = sum(count for _, count in results)
        return cohere_to_embeddings(
            {
                "embeddings": [vector for vector, _ in results],
                "meta": {"billed_units": {"input_tokens": tokens}},
            },
            request=request,
        )

    def _json(self, response: httpx.Response) -> object:
        try:
            return response.json()
        except ValueError:
            raise UpstreamError(f"upstream {self.name!r} sent a body that is not JSON") from None

    def status_error(self, status: int, text: str, headers: httpx.Headers) -> GatewayError:
        """The base mapping, with AWS's error type (`x-amzn-errortype`) in the message."""
        error = super().status_error(status, text, headers)
        kind = headers.get("x-amzn-errortype", "").split(":", 1)[0]
        if not kind:
            return error
        return type(error)(
            f"{error.message} ({kind})", param=error.param, code=error.code, headers=error.headers
        )

    def _stream_error(self, name: str, payload: object) -> GatewayError:
        message = payload.get("message") if isinstance(payload, dict) else None
        text = f"upstream {self.name!r} failed mid-stream ({name}): {message or 'no message'}"
        if name == "modelTimeoutException":
            return UpstreamTimeout(text)
        return _STREAM_ERRORS.get(name, UpstreamError)(text)
