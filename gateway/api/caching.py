"""The cache stage of the chat pipeline (chat, and Anthropic messages once translated).

After the input policy (so only redacted text is ever keyed, stored or embedded), `probe`
looks the request up in its scope; a hit becomes the request's answer (`hit`: JSON, or
replayed as a stream in the shape the client asked for), which then passes the output policy
like any other. A miss goes to the router and its answer is stored once it completed cleanly
(`keep`), before it goes out (a stream's before its end marker), so a repeat or a paraphrase
that follows it on any replica finds it; identical requests in flight on one ingress replica
share one upstream call. The cache is optional: a lookup or insert that fails or is slow is
served as a miss, logged and counted, never an error.

Per request, `x-raygate-cache-control` says `no-cache` (answer fresh, store it), `no-store`
(may answer from cache, store nothing) or `bypass` (neither).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from gateway.accounting.pricing import PriceTable
from gateway.api.backend import ChatAnswer
from gateway.api.embedding import RequestEmbedding
from gateway.api.exchange import Exchange
from gateway.api.near_cache import NearCache
from gateway.cache.answer import CachedAnswer
from gateway.cache.config import CacheConfig
from gateway.cache.lookup import (
    CacheQuery,
    CacheResult,
    Exploration,
    NearbyHits,
    NewEntry,
    Observation,
    Phase,
    Selector,
)
from gateway.cache.precache import FollowUp
from gateway.cache.request import CacheRequest, chat_request
from gateway.errors import InvalidRequest
from gateway.identity.principal import Principal
from gateway.protocol.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessage,
    ChoiceDelta,
    ChunkChoice,
    EmbeddingUsage,
    Usage,
    new_id,
)
from gateway.routing.router import Route, Routed, RoutedStream

log = logging.getLogger(__name__)

Control = Literal["default", "no-cache", "no-store", "bypass"]
_CONTROLS: frozenset[str] = frozenset({"no-cache", "no-store", "bypass"})


class CacheBackend(Protocol):
    """The cache replicas, in-process (`CacheService`) or through a Serve handle."""

    async def lookup(self, query: CacheQuery) -> CacheResult: ...

    async def insert(self, entry: NewEntry) -> int: ...

    async def observe(
        self,
        exploration: Exploration,
        fresh_answer: str,
        *,
        tokens: int | None = None,
        verdict: bool | None = None,
    ) -> Observation: ...

    async def follow_ups(self, request: CacheRequest) -> list[FollowUp]: ...

    async def embed(self, texts: list[str]) -> np.ndarray: ...

    async def count_nearby(self, hits: NearbyHits) -> None: ...

    async def invalidate(self, selector: Selector) -> int: ...

    async def stats(self) -> dict[str, Any]: ...


Stored = Callable[[CacheRequest, CachedAnswer], None]


class Judge(Protocol):
    """A verdict on a check: whether an explored candidate's stored answer says what the
    fresh one says (None: no verdict), and the tokens spent reaching it (`judging.py`)."""

    async def verdict(self, exploration: Exploration, fresh: str) -> tuple[bool | None, int]: ...


@dataclass
class Probe:
    """One request's cache lookup: the cache's view of the request (what to store under on a
    miss), and what the lookup found."""

    request: CacheRequest
    store: bool
    result: CacheResult | None  # None when the request did not look (bypass, no-cache)
    answer: CachedAnswer | None  # the hit's answer
    phase: Phase | None = None  # how the hit was found
    lead: asyncio.Future[CachedAnswer | None] | None = None  # identical requests wait on it

    @property
    def hit(self) -> bool:
        return self.answer is not None

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def key(self) -> tuple[str, str, str]:
        """What identical requests share (the lead they follow)."""
        return self.request.scope, self.request.context, self.request.text

    @property
    def exploration(self) -> Exploration | None:
        """The candidate the cache chose to check against this request's fresh answer."""
        return self.result.explore if self.result is not None else None


def control_of(value: str | None) -> Control:
    """Parse `x-raygate-cache-control`; anything else is a 400, not silently ignored."""
    if value is None or not value.strip():
        return "default"
    normalised = value.strip().lower()
    if normalised not in _CONTROLS:
        raise InvalidRequest(
            f"x-raygate-cache-control must be one of no-cache, no-store, bypass; got {value!r}.",
            param="x-raygate-cache-control",
        )
    return normalised  # type: ignore[return-value]


class ResponseCache:
    """The cache stage: scoping and lookups, hits answered as JSON or replayed as a stream,
    and misses' answers stored once they completed cleanly."""

    def __init__(
        self,
        config: CacheConfig,
        backend: CacheBackend,
        *,
        prices: PriceTable,
        near: NearCache | None = None,
        judge: Judge | None = None,
    ) -> None:
        """`near` answers exact repeats in this process (the ingress replica's near cache);
        `judge` gives its verdict on each check before the cache replica compares."""
        self.config = config
        self.backend = backend
        self.near = near
        self.judge = judge
        self._prices = prices
        self._leads: dict[tuple[str, str, str], asyncio.Future[CachedAnswer | None]] = {}
        self._reports: set[asyncio.Task[None]] = set()  # observations and slow inserts

    def applies(self, model: str) -> bool:
        return self.config.enabled_for(model)

    def request_of(self, body: ChatCompletionRequest, principal: Principal) -> CacheRequest:
        """The cache's view of a chat request from `principal`."""
        return chat_request(
            body.model,
            [m.model_dump(exclude_none=True) for m in body.messages],
            body.model_dump(exclude_none=True, exclude={"messages", "model"}),
            self.config,
            user=principal.user_id,
            groups=principal.groups,
        )

    async def probe(self, exchange: Exchange, body: ChatCompletionRequest) -> Probe | None:
        """Look `body` up as `x-raygate-cache-control` allows; None when the cache does not
        apply to this request at all. Reuses the request's embedding when one was computed
        of the same text, and keeps the one the lookup computed for the stages after it.

        The lookup may choose to check a candidate against this request's fresh answer
        instead of serving it (the learned phase's exploration): to the client that is a
        miss; `keep` reports the fresh answer back (`observe`)."""
        control = control_of(exchange.headers.get("x-raygate-cache-control"))
        principal = exchange.principal
        if not self.applies(body.model) or principal is None:
            return None
        request = self.request_of(body, principal)
        store = control in ("default", "no-cache") and _storable(body) and request.cacheable
        if _carries_tool_results(body) and not self.config.cache_tool_results:
            exchange.cache_phase = "bypass"
            return Probe(request, False, None, None)
        if control in ("no-cache", "bypass") or not request.cacheable:
            exchange.cache_phase = "bypass"
            return Probe(request, store, None, None)
        probe = Probe(request, store, None, None)
        if probe.key in self._leads:
            answer = await self._follow(self._leads[probe.key])
            if answer is not None:  # an identical request in flight here answered it
                self.answered(exchange, "exact", 1.0, answer.usage(), answer.target)
                return Probe(request, False, None, answer, "exact")
        known = RequestEmbedding.known(exchange, request.text)
        result = await self.find(request.query(known), keep=control == "default")
        probe.result = result
        if result is not None and result.embedding is not None:
            RequestEmbedding.note(exchange, request.text, result.embedding)
        exchange.cache_replica = result.replica if result is not None else None
        answer = _answer_of(result) if result is not None else None
        if result is not None and result.hit is not None and answer is not None:
            phase, similarity = result.hit.phase, result.similarity
            self.answered(exchange, phase, similarity, answer.usage(), answer.target)
            return Probe(request, store, result, answer, result.hit.phase)
        exchange.cache_phase = "miss"
        exchange.similarity = round(result.similarity, 4) if result is not None else None
        if store and self.config.coalesce and not body.stream and probe.key not in self._leads:
            # The first of identical requests asks upstream; the rest wait for its answer.
            probe.lead = self._leads[probe.key] = asyncio.get_running_loop().create_future()
        return probe

    def answered(
        self,
        exchange: Exchange,
        phase: Phase,
        similarity: float,
        usage: Usage | EmbeddingUsage,
        target: str | None,
    ) -> None:
        """Note on `exchange` that the cache answered it: nothing spent, and what the
        stored answer's tokens would have cost at the target that produced them."""
        exchange.cache_phase = phase
        exchange.similarity = round(similarity, 4)
        exchange.cost_usd = 0.0
        completion_tokens = usage.completion_tokens if isinstance(usage, Usage) else 0
        exchange.cost_avoided_usd = (
            None
            if target is None
            else self._prices.cost_avoided(target, usage.prompt_tokens, completion_tokens)
        )
        exchange.note_usage(usage)

    async def _follow(self, lead: asyncio.Future[CachedAnswer | None]) -> CachedAnswer | None:
        """The answer of the identical request in flight, or None when it gave none (it
        failed, was not cacheable, or took longer than `coalesce_wait_s`)."""
        try:
            return await asyncio.wait_for(asyncio.shield(lead), self.config.coalesce_wait_s)
        except TimeoutError:
            return None

    async def find(self, query: CacheQuery, *, keep: bool) -> CacheResult | None:
        """The near cache's hit, else a cache replica's result (kept near when `keep`: the
        request's cache control allows storing)."""
        near = self.near
        if near is None:
            return await self.lookup(query)
        result = near.lookup(query)
        if result is None:
            result = await self.lookup(query)
            if keep and result is not None:
                near.keep(query, result)
        return result

    async def lookup(self, query: CacheQuery) -> CacheResult | None:
        """The backend's result, or None when the lookup failed or was slow (a miss)."""
        try:
            return await asyncio.wait_for(
                self.backend.lookup(query), timeout=self.config.lookup_timeout_s
            )
        except Exception:
            # An optional stage: a dead or slow cache is a miss, never a failed request.
            log.warning("cache lookup failed; answering as a miss", exc_info=True)
            return None

    async def insert(self, entry: NewEntry) -> asyncio.Task[None] | None:
        """Store `entry`, waiting for it at most `lookup_timeout_s`: a slower insert goes on
        off the response path and is returned (it used to be cancelled, and the entry lost,
        on a busy machine). A failure is logged, never raised; a client that goes away
        cancels nothing."""
        task = asyncio.create_task(self._inserted(entry))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)
        done, _ = await asyncio.wait({task}, timeout=self.config.lookup_timeout_s)
        if done:
            return None
        log.warning("cache insert slower than %gs: the answer goes out, the insert goes on",
                    self.config.lookup_timeout_s)  # fmt: skip
        return task

    async def _inserted(self, entry: NewEntry) -> None:
        try:
            async with asyncio.timeout(_INSERT_GIVE_UP_S):
                await self.backend.insert(entry)
        except Exception:
            log.warning("cache insert failed; the answer was served but not stored", exc_info=True)

    # --- answering a hit -----------------------------------------------------------------

    def hit(self, exchange: Exchange, probe: Probe, *, stream: bool) -> ChatAnswer:
        """The hit as this request's answer: a completion, or a replayed stream."""
        assert probe.answer is not None and probe.phase is not None
        route = Route(target=f"cache/{probe.phase}")
        exchange.route = route
        if stream:
            return RoutedStream(route, self._replay(probe.model, probe.answer))
        return Routed(self._completion(probe.model, probe.answer), route)

    @staticmethod
    def _completion(model: str, answer: CachedAnswer) -> ChatCompletion:
        message = ChatMessage(role="assistant", content=answer.content)
        return ChatCompletion(
            model=model,
            choices=[ChatChoice(index=0, message=message, finish_reason=answer.finish_reason)],
            usage=answer.usage(),
        )

    async def _replay(
        self, model: str, answer: CachedAnswer
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        """Real chunks, as an upstream would stream them, usage last."""
        chunk_id = new_id("chatcmpl")

        def chunk(delta: ChoiceDelta, finish: str | None = None) -> ChatCompletionChunk:
            choice = ChunkChoice(index=0, delta=delta, finish_reason=finish)
            return ChatCompletionChunk(id=chunk_id, model=model, choices=[choice])

        yield chunk(ChoiceDelta(role="assistant", content=""))
        size = self.config.replay_chunk_chars
        for start in range(0, len(answer.content), size):
            yield chunk(ChoiceDelta(content=answer.content[start : start + size]))
        yield chunk(ChoiceDelta(), answer.finish_reason)
        yield ChatCompletionChunk(id=chunk_id, model=model, usage=answer.usage())

    # --- storing a miss ------------------------------------------------------------------

    async def keep(
        self,
        probe: Probe | None,
        call: Awaitable[ChatAnswer],
        then: Stored | None = None,
    ) -> ChatAnswer:
        """The routed answer, stored once complete (a stream: if it ran to a clean end)
        when the probe says it may be; identical requests waiting on this one get it.
        `then` is told of each answer stored (pre-caching)."""
        try:
            answer = await call
        except BaseException:
            self._settle(probe, None)  # they ask for themselves
            raise
        if probe is None or not probe.store:
            self._settle(probe, None)
            return answer
        if isinstance(answer, RoutedStream):
            return RoutedStream(answer.route, self._recording(probe, answer, then))
        stored = cached_answer(answer.response, answer.route.target)
        self._settle(probe, stored)
        if stored is not None:
            await self._kept(probe, stored, then)
        return answer

    def _settle(self, probe: Probe | None, answer: CachedAnswer | None) -> None:
        """Give the requests waiting on `probe`'s lead its answer (None: they ask for
        themselves). An answer stays on offer until it is stored (see `_store`)."""
        if probe is None or probe.lead is None or probe.lead.done():
            return
        probe.lead.set_result(answer)
        if answer is None and self._leads.get(probe.key) is probe.lead:
            del self._leads[probe.key]

    async def _recording(
        self, probe: Probe, stream: RoutedStream[ChatCompletionChunk], then: Stored | None
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        cacheable = True
        async with aclosing(stream.chunks) as chunks:
            async for chunk in chunks:
                usage = chunk.usage or usage
                for choice in chunk.choices:
                    if choice.index != 0 or choice.delta.tool_calls:
                        cacheable = False
                    if choice.delta.content:
                        parts.append(choice.delta.content)
                    finish = choice.finish_reason or finish
                yield chunk
        if cacheable and finish in ("stop", "length") and parts:
            answer = CachedAnswer.of("".join(parts), finish, usage, stream.route.target)
            await self._kept(probe, answer, then)  # before the stream's end marker goes out

    async def _kept(self, probe: Probe, answer: CachedAnswer, then: Stored | None) -> None:
        await self._store(probe, answer)
        self._observe(probe, answer)
        if then is not None:
            then(probe.request, answer)

    async def _store(self, probe: Probe, answer: CachedAnswer) -> None:
        """Store an answer before it goes out, so that no later request on any replica can
        miss it (an entry is in the log, which every cache replica catches up with on a
        miss, once the insert returns); a failed insert still lets the answer go out, and a
        slow one too, the answer staying on offer here until the insert has ended."""
        embedding = probe.result.embedding if probe.result is not None else None
        pending = None
        try:
            pending = await self.insert(
                probe.request.entry(answer.model_dump_json(), embedding=embedding)
            )
        finally:
            if pending is None:
                self._release(probe)
            else:
                pending.add_done_callback(lambda _: self._release(probe))

    def _release(self, probe: Probe) -> None:
        if probe.lead is not None and self._leads.get(probe.key) is probe.lead:
            del self._leads[probe.key]  # from now on the cache answers

    def _observe(self, probe: Probe, answer: CachedAnswer) -> None:
        """Report an explored candidate's check: the fresh answer (as the upstream sent it)
        against the stored one, off the response path; the cache learns from the outcome."""
        exploration = probe.exploration
        if exploration is None:
            return
        tokens = answer.prompt_tokens + answer.completion_tokens
        task = asyncio.create_task(self._report(exploration, answer.content, tokens))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def _report(self, exploration: Exploration, text: str, tokens: int) -> None:
        verdict: bool | None = None
        if self.judge is not None:
            verdict, judged = await self.judge.verdict(exploration, text)
            tokens += judged  # the judge's call is part of what the check cost
        try:
            await self.backend.observe(exploration, text, tokens=tokens, verdict=verdict)
        except Exception:  # the lesson is lost, the request was answered: logged only
            log.warning("cache observe failed; nothing learned from this check", exc_info=True)

    async def drain(self) -> None:
        """Wait for the checks still being reported and the slow inserts (replica shutdown,
        and tests)."""
        while self._reports:
            await asyncio.gather(*list(self._reports), return_exceptions=True)

    async def aclose(self) -> None:
        """Report the checks in flight and the near cache's hits (replica shutdown)."""
        await self.drain()
        if self.near is not None:
            await self.near.aclose()


# A slow insert still pending after this is given up (logged): its cache replica is stuck.
_INSERT_GIVE_UP_S = 60.0


def _storable(body: ChatCompletionRequest) -> bool:
    # One choice only: n > 1 answers would replay as a single choice.
    return body.n in (None, 1)


def _carries_tool_results(body: ChatCompletionRequest) -> bool:
    # A tool result is data from outside the caller (a fetched page, a query's rows) that may
    # differ on the next call however alike the request: the model must read it afresh.
    return any(m.role in ("tool", "function") for m in body.messages)


def _answer_of(result: CacheResult) -> CachedAnswer | None:
    if result.hit is None:
        return None
    try:
        return CachedAnswer.model_validate_json(result.hit.response)
    except ValueError:
        log.warning("cache entry %s is unreadable; treated as a miss", result.hit.entry_id)
        return None


def cached_answer(response: ChatCompletion, target: str) -> CachedAnswer | None:
    """What the cache keeps of a whole answer: one choice of text that ended cleanly
    (None: not cacheable)."""
    if len(response.choices) != 1:
        return None
    choice = response.choices[0]
    if choice.message.tool_calls or choice.finish_reason not in ("stop", "length"):
        return None
    content = choice.message.text()
    if not content:
        return None
    return CachedAnswer.of(content, choice.finish_reason, response.usage, target)
