"""The cache stage of the routes answered whole: `/v1/completions` and `/v1/embeddings`.

Exact only: the prompt or input byte for byte, in a scope of the route, the model, the
parameters that change the answer and the isolation identity
(`gateway.cache.request.completion_request`, `embedding_request`). A different prompt to a
completion model, or a different text to embed, is a different request, so there is no
semantic phase. The whole response is stored as the upstream gave it (a hit then passes the
output policy like a fresh answer) and served with a fresh id and time.
A streamed completion is neither looked up nor stored. The same cache replicas, controls
(`x-raygate-cache-control`) and failure rule as chat: a cache that fails is a miss.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.api.backend import CompletionAnswer
from gateway.api.caching import ResponseCache, control_of
from gateway.api.exchange import Exchange
from gateway.cache.request import CacheRequest, completion_request, embedding_request
from gateway.protocol.openai import (
    Completion,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Usage,
    new_id,
)
from gateway.routing.router import Route, Routed

_Response = TypeVar("_Response", Completion, EmbeddingResponse)


class StoredResponse(BaseModel):
    """What an exact entry stores: the whole response, and the target that produced it (to
    price the cost that a hit avoids)."""

    target: str
    response: dict[str, Any]


class ExactCache:
    """Exact lookups and stores for legacy completions and embeddings, on the chat cache's
    replicas (`ResponseCache`)."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache

    async def completion(
        self,
        exchange: Exchange,
        body: CompletionRequest,
        call: Callable[[], Awaitable[CompletionAnswer]],
    ) -> CompletionAnswer:
        """The completion from the cache, or `call`'s answer, stored when it is whole."""
        if body.stream:
            return await call()
        params = body.model_dump(exclude_none=True, exclude={"model", "prompt"})
        request = self._request(exchange, body.model, completion_request, body.prompt, params)

        async def whole() -> Routed[Completion]:
            answer = await call()
            if not isinstance(answer, Routed):  # an unstreamed request is answered whole
                raise TypeError(f"an unstreamed completion was answered by {type(answer)}")
            return answer

        return await self._answer(exchange, request, Completion, whole)

    async def embeddings(
        self,
        exchange: Exchange,
        body: EmbeddingRequest,
        call: Callable[[], Awaitable[Routed[EmbeddingResponse]]],
    ) -> Routed[EmbeddingResponse]:
        """The embeddings from the cache, or `call`'s, stored."""
        params = body.model_dump(exclude_none=True, exclude={"model", "input"})
        request = self._request(exchange, body.model, embedding_request, body.input, params)
        return await self._answer(exchange, request, EmbeddingResponse, call)

    def _request(
        self,
        exchange: Exchange,
        model: str,
        key: Callable[..., CacheRequest],
        payload: Any,
        params: dict[str, Any],
    ) -> CacheRequest | None:
        principal = exchange.principal
        if not self.cache.applies(model) or principal is None:
            return None
        config = self.cache.config
        return key(model, payload, params, config, user=principal.user_id, groups=principal.groups)

    async def _answer(
        self,
        exchange: Exchange,
        request: CacheRequest | None,
        shape: type[_Response],
        call: Callable[[], Awaitable[Routed[_Response]]],
    ) -> Routed[_Response]:
        control = control_of(exchange.headers.get("x-raygate-cache-control"))
        if request is None or not request.cacheable:
            return await call()
        if control in ("no-cache", "bypass"):
            exchange.cache_phase = "bypass"
        else:
            hit = await self._hit(exchange, request, shape, keep=control == "default")
            if hit is not None:
                return hit
        answer = await call()
        if control in ("default", "no-cache"):
            stored = StoredResponse(
                target=answer.route.target, response=answer.response.model_dump(mode="json")
            )
            await self.cache.insert(request.entry(stored.model_dump_json()))
        return answer

    async def _hit(
        self, exchange: Exchange, request: CacheRequest, shape: type[_Response], *, keep: bool
    ) -> Routed[_Response] | None:
        result = await self.cache.find(request.query(), keep=keep)
        exchange.cache_replica = result.replica if result is not None else None
        if result is None or result.hit is None:
            exchange.cache_phase = "miss"
            return None
        try:
            stored = StoredResponse.model_validate_json(result.hit.response)
            response = shape.model_validate(stored.response)
        except ValidationError:
            exchange.cache_phase = "miss"  # an entry of an older shape: answered fresh
            return None
        if isinstance(response, Completion):
            response = response.model_copy(
                update={"id": new_id("cmpl"), "created": int(time.time())}
            )
        usage = response.usage or Usage()
        self.cache.answered(exchange, "exact", 1.0, usage, stored.target)
        route = Route(target="cache/exact")
        exchange.route = route
        return Routed(response, route)
