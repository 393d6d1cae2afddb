"""The router: a model alias in, an answer from the first target that can give one out.

Targets of an alias are tried in order. A retryable failure (connect error, 429, 5xx,
timeout) before the first streamed chunk moves on to the next target; anything after the
first chunk belongs to the client and is raised as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

from gateway.config import GatewayConfig, ModelAlias, Target
from gateway.errors import GatewayError, ModelNotFound, UpstreamError, is_retryable
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Model,
    ModelList,
)
from gateway.providers.base import Provider
from gateway.providers.registry import build_provider

log = logging.getLogger(__name__)

_Req = TypeVar("_Req", ChatCompletionRequest, CompletionRequest, EmbeddingRequest)
_Resp = TypeVar("_Resp", bound=BaseModel)


@dataclass(slots=True)
class Route:
    """Which target answered, which failed before it, and how long the upstream took."""

    target: str
    failed: list[str] = field(default_factory=list)
    upstream_ms: float = 0.0

    def header(self) -> str:
        """The `x-raygate-route` value: `provider/model`, then `; tried=` earlier failures."""
        if not self.failed:
            return self.target
        return f"{self.target}; tried={','.join(self.failed)}"


@dataclass(slots=True)
class Routed(Generic[_Resp]):
    """A whole answer and its route."""

    response: _Resp
    route: Route


class Router:
    """Routes canonical (OpenAI-shaped) requests over the configured targets."""

    def __init__(self, config: GatewayConfig, providers: dict[str, Provider] | None = None):
        self._aliases = config.enabled_models()
        self._providers = (
            providers
            if providers is not None
            else {name: build_provider(name, p) for name, p in config.enabled_providers().items()}
        )

    async def aclose(self) -> None:
        """Close every provider's connection pool."""
        for provider in self._providers.values():
            await provider.aclose()

    async def ready(self) -> bool:
        """The in-process router is ready as soon as it exists."""
        return True

    def models(self) -> ModelList:
        """The aliases clients may ask for."""
        return ModelList(data=[Model(id=alias) for alias in self._aliases])

    def alias(self, name: str) -> ModelAlias:
        """The alias for a model name, or ModelNotFound."""
        entry = self._aliases.get(name)
        if entry is None:
            raise ModelNotFound(
                f"The model {name!r} does not exist or you do not have access to it.",
                param="model",
            )
        return entry

    async def chat(self, request: ChatCompletionRequest) -> Routed[ChatCompletion]:
        """A whole chat completion from the first target that gives one."""
        return await self._first_answer(request, lambda p, r: p.chat(r))

    async def completion(self, request: CompletionRequest) -> Routed[Completion]:
        """A whole legacy completion."""
        return await self._first_answer(request, lambda p, r: p.completion(r))

    async def embeddings(self, request: EmbeddingRequest) -> Routed[EmbeddingResponse]:
        """Embeddings from the first target that gives them."""
        return await self._first_answer(request, lambda p, r: p.embeddings(r))

    def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[Route | ChatCompletionChunk]:
        """The route, once the first chunk is in hand, then the chunks."""
        return self._first_stream(request, lambda p, r: p.chat_stream(r))

    def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Route | Completion]:
        """The route, then legacy completion chunks."""
        return self._first_stream(request, lambda p, r: p.completion_stream(r))

    # --- attempts ---------------------------------------------------------------------------

    def _attempts(self, request: _Req) -> list[tuple[Target, Provider, _Req]]:
        entry = self.alias(request.model)
        return [
            (t, self._providers[t.provider], request.model_copy(update={"model": t.model}))
            for t in entry.targets
        ]

    async def _first_answer(
        self, request: _Req, call: Callable[[Provider, _Req], Awaitable[_Resp]]
    ) -> Routed[_Resp]:
        failed: list[str] = []
        last: GatewayError | None = None
        for target, provider, upstream_request in self._attempts(request):
            started = time.perf_counter()
            try:
                response = await call(provider, upstream_request)
            except GatewayError as exc:
                if not is_retryable(exc):
                    raise
                failed.append(_failure(target, exc))
                last = exc
                continue
            response = response.model_copy(update={"model": request.model})
            upstream_ms = (time.perf_counter() - started) * 1000
            return Routed(response, Route(target.label, failed, upstream_ms))
        raise _exhausted(request.model, failed, last)

    async def _first_stream(
        self, request: _Req, open_stream: Callable[[Provider, _Req], AsyncIterator[_Resp]]
    ) -> AsyncIterator[Route | _Resp]:
        failed: list[str] = []
        last: GatewayError | None = None
        for target, provider, upstream_request in self._attempts(request):
            started = time.perf_counter()
            stream = open_stream(provider, upstream_request)
            try:
                first = await anext(stream)
            except StopAsyncIteration:
                last = UpstreamError(f"upstream {target.provider!r} sent an empty stream")
                failed.append(_failure(target, last))
                continue
            except GatewayError as exc:
                await stream.aclose()  # type: ignore[attr-defined]
                if not is_retryable(exc):
                    raise
                failed.append(_failure(target, exc))
                last = exc
                continue
            upstream_ms = (time.perf_counter() - started) * 1000
            try:
                yield Route(target.label, failed, upstream_ms)
                yield _renamed(first, request.model)
                async for chunk in stream:
                    yield _renamed(chunk, request.model)
            finally:
                await stream.aclose()  # type: ignore[attr-defined]
            return
        raise _exhausted(request.model, failed, last)


def _renamed(chunk: _Resp, alias: str) -> _Resp:
    # Clients see the alias they asked for, never the upstream's model name.
    chunk.model = alias  # type: ignore[attr-defined]
    return chunk


def _failure(target: Target, error: GatewayError) -> str:
    return f"{target.label}:{error.status}"


def _exhausted(alias: str, failed: list[str], last: GatewayError | None) -> GatewayError:
    if last is None:
        return UpstreamError(f"no target could serve model {alias!r}")
    log.warning("every target of %r failed: %s", alias, ", ".join(failed))
    if len(failed) > 1:
        last.message = f"{last.message} (every target of {alias!r} failed: {', '.join(failed)})"
    return last
