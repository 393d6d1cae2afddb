"""The request path: every model route runs the same named stages over one `Exchange`.

    admission        auth, body limits, validation, model access, rate limits and budget
    input policy     PII / secrets redacted or blocked, jailbreaks, topics, limits
    request embedding   computed once, by the first stage that needs it (policy or cache)
    cache            a hit answers here (JSON, or replayed as a stream); legacy completions
                     and embeddings exact only
    backend          the router: an external provider or a local model
    (pre-caching)    after a stored answer: likely follow-ups answered in the background
    output policy    whole answers and every streamed chunk, cache hits included
    response         headers, cost settled, the wire format, the audit record

A route module admits its request, asks the pipeline for the canonical answer (`chat`,
`completion`, `embeddings`), and responds in its wire format. The output policy and the
audit record come from here, not from each route remembering them.
"""

from __future__ import annotations

from functools import partial
from typing import TypeVar

from fastapi import Request, Response

from gateway.api.admission import Admission
from gateway.api.backend import ChatAnswer, CompletionAnswer, Upstream
from gateway.api.caching import ResponseCache
from gateway.api.exact_caching import ExactCache
from gateway.api.exchange import Exchange
from gateway.api.input_policy import InputPolicy
from gateway.api.output_policy import OutputPolicy
from gateway.api.precaching import Precaching
from gateway.api.response import Responder
from gateway.api.wire import Wire
from gateway.protocol.anthropic import CountTokensRequest, MessagesRequest
from gateway.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from gateway.protocol.responses import ResponsesRequest
from gateway.routing.routed import Routed, RoutedStream

_Body = TypeVar(
    "_Body",
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    MessagesRequest,
    CountTokensRequest,
    ResponsesRequest,
)
_T = TypeVar("_T")
_C = TypeVar("_C")


class Pipeline:
    """The stages, composed once per ingress replica (`create_api`)."""

    def __init__(
        self,
        admission: Admission,
        input_policy: InputPolicy,
        cache: ResponseCache | None,
        upstream: Upstream,
        output_policy: OutputPolicy,
        responder: Responder,
        precaching: Precaching | None = None,
    ) -> None:
        self.admission = admission
        self.input_policy = input_policy
        self.cache = cache
        self.exact_cache = ExactCache(cache) if cache is not None else None
        self.upstream = upstream
        self.output_policy = output_policy
        self.responder = responder
        self.precaching = precaching if precaching is not None and precaching.enabled else None
        self._closed = False

    async def admit(
        self, request: Request, model: type[_Body], *, metered: bool = True
    ) -> tuple[Exchange, _Body]:
        """Admission: the request's exchange and its validated body."""
        return await self.admission.admit(request, model, metered=metered)

    async def chat(self, exchange: Exchange, body: ChatCompletionRequest) -> ChatAnswer:
        """A chat request's answer, through every stage up to the response."""
        body = await self.input_policy.chat(exchange, body)
        probe = await self.cache.probe(exchange, body) if self.cache is not None else None
        answer: ChatAnswer
        if self.cache is not None and probe is not None and probe.hit:
            answer = self.cache.hit(exchange, probe, stream=body.stream)
        else:
            call = self.upstream.chat(exchange, body)
            then = self.precaching.after(exchange, body) if self.precaching else None
            answer = await (self.cache.keep(probe, call, then) if self.cache is not None else call)
        return exchange.observe(await self.output_policy.chat(exchange, answer))

    async def completion(self, exchange: Exchange, body: CompletionRequest) -> CompletionAnswer:
        """A legacy completion's answer (cached exactly when not streamed)."""
        body = await self.input_policy.completion(exchange, body)
        call = partial(self.upstream.completion, exchange, body)
        answer = await (
            self.exact_cache.completion(exchange, body, call) if self.exact_cache else call()
        )
        return exchange.observe(await self.output_policy.completion(exchange, answer))

    async def embeddings(
        self, exchange: Exchange, body: EmbeddingRequest
    ) -> Routed[EmbeddingResponse]:
        """Embeddings of the request's (checked, redacted) input, cached exactly; vectors
        have no output policy."""
        body = await self.input_policy.embeddings(exchange, body)
        call = partial(self.upstream.embeddings, exchange, body)
        answer = await (
            self.exact_cache.embeddings(exchange, body, call) if self.exact_cache else call()
        )
        return exchange.observe(answer)

    async def respond(
        self, exchange: Exchange, answer: Routed[_T] | RoutedStream[_C], wire: Wire[_T, _C]
    ) -> Response:
        """The response stage: the answer on the route's wire."""
        return await self.responder.respond(exchange, answer, wire)

    async def aclose(self) -> None:
        """Report the cache checks in flight, finish pre-caching, flush the audit trail and
        close identity and limit-store connections (replica shutdown); once."""
        if self._closed:
            return
        self._closed = True
        if self.cache is not None:
            await self.cache.aclose()
        if self.precaching is not None:
            await self.precaching.drain()
        await self.responder.aclose()
        await self.admission.identity.aclose()
