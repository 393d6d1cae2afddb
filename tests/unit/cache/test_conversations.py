"""Conversations matched on meaning, pre-caching of follow-ups, and the exact-only routes,
through `CacheService` with the real MiniLM embedder."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.embedder import Embedder
from gateway.cache.request import CacheRequest, chat_request, completion_request, embedding_request
from gateway.cache.service import CacheService
from tests.unit.cache.conftest import ManualClock

LEAVE = (
    "Employees get twenty-five days of paid leave a year, plus public holidays, accrued monthly."
)
EXPENSES = "Travel expenses are reimbursed within thirty days once receipts are in the portal."
CONTRACTORS = (
    "Contractors have no paid leave: their contract sets time off, and days off go unbilled."
)


def _stored(content: str) -> str:
    return json.dumps({"content": content, "prompt_tokens": 20, "completion_tokens": 30})


def _request(config: CacheConfig, *turns: str, user: str = "alice") -> CacheRequest:
    """A conversation: user, assistant, user, ... (assistant turns are long answers)."""
    messages: list[dict[str, Any]] = []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return chat_request("gpt-4o-mini", messages, {}, config, user=user)


def _service(embedder: Embedder, clock: ManualClock, **settings: Any) -> CacheService:
    config = CacheConfig(isolation="user", **settings)

    async def embed(texts: list[str]) -> np.ndarray:
        return await asyncio.to_thread(embedder.embed, texts)

    return CacheService(SemanticCache(embedder, config, clock=clock), embed)


@pytest.mark.asyncio
async def test_a_follow_up_hits_after_an_equivalent_exchange_and_not_after_another(
    embedder: Embedder, clock: ManualClock
) -> None:
    service = _service(embedder, clock, exploration_rate=0.0)
    config = service.cache.config
    asked = _request(
        config, "What is the leave policy for employees?", LEAVE, "And what about contractors?"
    )
    await service.insert(asked.entry(_stored(CONTRACTORS)))

    equivalent = _request(
        config, "What's the employee leave policy?", LEAVE, "And what about contractors?"
    )
    found = await service.lookup(equivalent.query())
    assert found.hit is not None and found.hit.phase == "semantic"
    assert json.loads(found.hit.response)["content"] == CONTRACTORS

    different = _request(
        config, "What is the travel expense policy?", EXPENSES, "And what about contractors?"
    )
    missed = await service.lookup(different.query())
    assert missed.hit is None and missed.explore is None
    assert missed.similarity < 0.7


@pytest.mark.asyncio
async def test_the_same_exchange_hits_the_exact_phase_and_a_new_one_does_not(
    embedder: Embedder, clock: ManualClock
) -> None:
    service = _service(embedder, clock)
    config = service.cache.config
    asked = _request(config, "What is the leave policy?", LEAVE, "And contractors?")
    await service.insert(asked.entry(_stored(CONTRACTORS)))
    again = await service.lookup(
        _request(config, "What is the leave policy?", LEAVE, "And contractors?").query()
    )
    assert again.hit is not None and again.hit.phase == "exact"
    single = await service.lookup(_request(config, "And contractors?").query())
    assert single.hit is None  # never a conversation's answer for a lone question


@pytest.mark.asyncio
async def test_a_conversation_with_a_changed_fact_in_its_context_is_refused(
    embedder: Embedder, clock: ManualClock
) -> None:
    service = _service(embedder, clock)
    config = service.cache.config
    await service.insert(
        _request(
            config, "How many leave days do staff get in 2024?", LEAVE, "And contractors?"
        ).entry(_stored(CONTRACTORS))
    )
    found = await service.lookup(
        _request(
            config, "How many leave days do staff get in 2025?", LEAVE, "And contractors?"
        ).query()
    )
    assert found.hit is None and found.rejected


async def _ask_after(service: CacheService, first: str, follow: str, answer: str) -> None:
    request = _request(service.cache.config, first, LEAVE, follow)
    await service.insert(request.entry(_stored(answer)))


@pytest.mark.asyncio
async def test_pre_caching_suggests_the_follow_up_others_asked_next(
    embedder: Embedder, clock: ManualClock
) -> None:
    precache = {"enabled": True, "min_support": 2, "context_similarity": 0.85}
    service = _service(embedder, clock, precache=precache)
    config = service.cache.config
    for first in (
        "What is the leave policy for employees?",
        "What's the employee leave policy?",
        "Can you tell me the employee leave policy?",
    ):
        await _ask_after(service, first, "And what about contractors?", CONTRACTORS)
    await _ask_after(service, "What is the leave policy for employees?", "Why?", LEAVE)
    # Someone asks the question again in other words (too far from the others for their
    # follow-ups to hit from the cache already): contractors most likely come next.
    now = _request(config, "What are the rules on employee leave?")
    suggested = await service.follow_ups(now)
    assert [f.text for f in suggested] == ["And what about contractors?"]
    assert suggested[0].support == 3 and suggested[0].share == 0.75
    assert suggested[0].context == "What are the rules on employee leave?"
    assert suggested[0].scope == _request(config, now.text, LEAVE, "x").scope
    # An unrelated question has no follow-ups to suggest.
    assert await service.follow_ups(_request(config, "How do I book a meeting room?")) == []


@pytest.mark.asyncio
async def test_pre_caching_is_off_by_default_and_keeps_to_its_budget(
    embedder: Embedder, clock: ManualClock
) -> None:
    off = _service(embedder, clock)
    precache = {"enabled": True, "min_support": 1, "budget_per_hour": 1, "context_similarity": 0.85}
    on = _service(embedder, clock, precache=precache)
    for service in (off, on):
        await _ask_after(
            service, "What is the leave policy for employees?", "And contractors?", CONTRACTORS
        )
    question = "What are the rules on employee leave?"
    assert await off.follow_ups(_request(off.cache.config, question)) == []
    assert len(await on.follow_ups(_request(on.cache.config, question))) == 1
    assert await on.follow_ups(_request(on.cache.config, question)) == []  # budget spent
    clock.advance(3601)
    assert len(await on.follow_ups(_request(on.cache.config, question))) == 1


@pytest.mark.asyncio
async def test_exact_only_routes_hit_byte_for_byte_and_embed_nothing(clock: ManualClock) -> None:
    embedded: list[list[str]] = []

    class Refusing:
        dim = 384

        def embed(self, texts: list[str]) -> np.ndarray:
            embedded.append(texts)
            raise AssertionError("exact-only entries are never embedded")

    async def embed(texts: list[str]) -> np.ndarray:
        return Refusing().embed(texts)

    config = CacheConfig(isolation="user")
    service = CacheService(SemanticCache(Refusing(), config, clock=clock), embed)
    completion = completion_request(
        "davinci", "Once upon a time", {"max_tokens": 8}, config, user="alice"
    )
    vectors = embedding_request(
        "text-embedding-3-small", ["alpha", "beta"], {}, config, user="alice"
    )
    for request in (completion, vectors):
        await service.insert(request.entry(_stored("stored")))
        found = await service.lookup(request.query())
        assert found.hit is not None and found.hit.phase == "exact"
    spaced = completion_request(
        "davinci", "Once upon a  time", {"max_tokens": 8}, config, user="alice"
    )
    assert (await service.lookup(spaced.query())).hit is None
    other = embedding_request("text-embedding-3-small", ["alpha", "Beta"], {}, config, user="alice")
    assert (await service.lookup(other.query())).hit is None
    assert embedded == []
