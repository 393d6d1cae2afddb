"""Predictive pre-caching in the request path (`cache.precache`, off by default).

Once a chat answer is stored, the cache is asked which follow-up questions other people
asked after an exchange that means the same (`CacheService.follow_ups`, within its budget).
Each is asked here in the background, as the next user turn after the request's messages
and the answer just given, one at a time per ingress replica (low priority: after the
response, never beside another pre-caching call), and its answer stored under the
follow-up's own scope like any answer, so the user's next question can be a hit.

The follow-up texts come from stored, already redacted prompts of the same scope, so they
are as the input policy left them. The call is the gateway's, not the user's: it is not
charged to the user's budget, and each one writes an audit record of its own
(`admin_action` `cache.precache`, `admin_target` the request that led to it) with its
tokens and cost, so the spend is counted where every other spend is.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from gateway.accounting.pricing import PriceTable
from gateway.api.backend import Upstream
from gateway.api.caching import ResponseCache, Stored, cached_answer
from gateway.api.exchange import Exchange
from gateway.audit.writer import AuditWriter
from gateway.cache.answer import CachedAnswer
from gateway.cache.precache import FollowUp
from gateway.cache.request import CacheRequest
from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.protocol.openai import ChatCompletion, ChatCompletionRequest, ChatMessage
from gateway.routing.routed import Routed

log = logging.getLogger(__name__)


class Precaching:
    """Answers likely follow-ups in the background after a chat answer was stored."""

    def __init__(
        self,
        cache: ResponseCache,
        upstream: Upstream,
        prices: PriceTable,
        audit: AuditWriter | None,
    ) -> None:
        self.cache = cache
        self.upstream = upstream
        self._prices = prices
        self._audit = audit
        self._one_at_a_time = asyncio.Semaphore(1)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.cache.config.precache.enabled

    def after(self, exchange: Exchange, body: ChatCompletionRequest) -> Stored:
        """The hook `ResponseCache.keep` calls once `body`'s answer is stored."""

        def stored(request: CacheRequest, answer: CachedAnswer) -> None:
            task = asyncio.create_task(self._follow_ups(exchange, body, request, answer))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return stored

    async def drain(self) -> None:
        """Wait for the follow-ups being answered (replica shutdown, and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _follow_ups(
        self,
        exchange: Exchange,
        body: ChatCompletionRequest,
        request: CacheRequest,
        answer: CachedAnswer,
    ) -> None:
        try:
            follow_ups = await self.cache.backend.follow_ups(request)
        except Exception:  # an optional stage: nothing is pre-answered, nothing fails
            log.warning("asking the cache for follow-ups failed", exc_info=True)
            return
        for follow_up in follow_ups:
            async with self._one_at_a_time:
                await self._answer(exchange, body, answer, follow_up)

    async def _answer(
        self,
        exchange: Exchange,
        body: ChatCompletionRequest,
        answer: CachedAnswer,
        follow_up: FollowUp,
    ) -> None:
        principal = exchange.principal
        if principal is None:  # the cache applies to authenticated requests only
            return
        messages = [
            *body.messages,
            ChatMessage(role="assistant", content=answer.content),
            ChatMessage(role="user", content=follow_up.text),
        ]
        asked = body.model_copy(update={"messages": messages, "stream": None})
        background = Exchange(
            request_id=f"req_{uuid.uuid4().hex}",
            path=exchange.path,
            client_address=None,
            principal=principal,
            grant=exchange.grant,
            model=body.model,
            prompt=follow_up.text,
            admin_action="cache.precache",
            admin_target=f"request:{exchange.request_id}",
        )
        try:
            routed = await self.upstream.chat(background, asked)
            if not isinstance(routed, Routed):  # unstreamed requests are answered whole
                raise TypeError(f"a pre-caching call was answered by {type(routed)}")
            background.status = 200
            background.note_answer(routed.response)
            if background.usage is not None:
                background.cost_usd = self._prices.cost_of_usage(
                    routed.route.target, background.usage
                )
            await self._store(principal, asked, follow_up, routed)
        except GatewayError as exc:
            background.status, background.error_code = exc.status, exc.code
        except Exception:
            log.exception("pre-answering a follow-up failed")
            background.status, background.error_code = 500, "internal_error"
        if self._audit is not None:
            await self._audit.record(background.record())

    async def _store(
        self,
        principal: Principal,
        asked: ChatCompletionRequest,
        follow_up: FollowUp,
        routed: Routed[ChatCompletion],
    ) -> None:
        request = self.cache.request_of(asked, principal)
        stored = cached_answer(routed.response, routed.route.target)
        if stored is None or request.scope != follow_up.scope:
            # Not a clean single answer, or the request would not be looked up where the
            # follow-up is asked (the suggestion was of another shape): nothing to keep.
            return
        await self.cache.insert(request.entry(stored.model_dump_json()))
