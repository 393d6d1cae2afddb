"""Retries: full-jitter backoff, Retry-After, the deadline, and what is never retried."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from gateway.config import ProviderConfig
from gateway.errors import InvalidRequest, RateLimited, UpstreamRejected, UpstreamUnavailable
from gateway.protocol.openai import ChatCompletion, ChatCompletionRequest
from gateway.providers.openai_compat import OpenAICompatible
from gateway.routing.config import RetryPolicy
from gateway.routing.retry import Backoff, retry_after_s
from tests.support.simulator import Sim
from tests.unit.routing.support import MakeRouter, RecordingSleep, chat


class CeilingRng(random.Random):
    """Draws the top of every interval, so each backoff wait is its ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


def _retrying(**retry: float) -> str:
    fields = ", ".join(f"{k}: {v}" for k, v in retry.items())
    return f"""
models:
  solo: {{retry: {{{fields}}}, targets: [first/model-a]}}
  pair: {{retry: {{{fields}}}, targets: [first/model-a, second/model-b]}}
"""


def test_backoff_ceiling_doubles_up_to_max_delay() -> None:
    backoff = Backoff(RetryPolicy(base_delay=0.1, max_delay=0.5), CeilingRng())
    assert [backoff.delay(n) for n in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]


def test_backoff_draws_are_full_jitter_within_the_ceiling() -> None:
    backoff = Backoff(RetryPolicy(base_delay=1.0, max_delay=8.0), random.Random(5))
    draws = [backoff.delay(3) for _ in range(500)]
    assert all(0.0 <= d <= 8.0 for d in draws)
    assert min(draws) < 1.0 and max(draws) > 7.0  # spread over the whole interval


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after_s(RateLimited("x", headers={"retry-after": "2.5"})) == 2.5
    when = format_datetime(datetime.fromtimestamp(1_000_030, UTC), usegmt=True)
    error = RateLimited("x", headers={"retry-after": when})
    assert retry_after_s(error, now_epoch=1_000_000) == 30
    assert retry_after_s(RateLimited("x", headers={"retry-after": "soon"})) is None
    assert retry_after_s(RateLimited("x")) is None


@pytest.mark.asyncio
async def test_retryable_failure_is_retried_after_the_backoff_waits(
    make_router: MakeRouter, sim: Sim, sleep: RecordingSleep
) -> None:
    router = await make_router(
        _retrying(max_attempts=3, base_delay=0.1, max_delay=1), rng=CeilingRng()
    )
    await sim.fault(kind="status", status=503, count=2)
    routed = await router.chat(chat("solo"))
    assert routed.route.header() == "first/model-a; tried=first/model-a:503,first/model-a:503"
    assert sleep.waits == [0.1, 0.2]
    assert await sim.models_asked() == ["model-a"] * 3


@pytest.mark.asyncio
async def test_fallback_comes_first_and_the_chain_is_retried_after_one_wait(
    make_router: MakeRouter, sim: Sim, sleep: RecordingSleep
) -> None:
    router = await make_router(_retrying(max_attempts=2, base_delay=0.25), rng=CeilingRng())
    await sim.fault(kind="status", status=502, count=2)
    routed = await router.chat(chat("pair"))
    assert routed.route.header() == ("first/model-a; tried=first/model-a:502,second/model-b:502")
    assert sleep.waits == [0.25]  # no wait between targets, one before the second round


@pytest.mark.asyncio
async def test_retry_after_is_waited_for_when_longer_than_the_backoff(
    make_router: MakeRouter, sim: Sim, sleep: RecordingSleep
) -> None:
    router = await make_router(
        _retrying(max_attempts=2, base_delay=0.1, max_retry_after=5), rng=CeilingRng()
    )
    await sim.fault(kind="status", status=429, retry_after=1.5)
    routed = await router.chat(chat("solo"))
    assert routed.route.header() == "first/model-a; tried=first/model-a:429"
    assert sleep.waits == [1.5]


@pytest.mark.asyncio
async def test_retry_after_beyond_the_cap_is_not_waited_for(
    make_router: MakeRouter, sim: Sim, sleep: RecordingSleep
) -> None:
    router = await make_router(_retrying(max_attempts=3, max_retry_after=5))
    await sim.fault(kind="status", status=429, retry_after=30)
    with pytest.raises(RateLimited) as err:
        await router.chat(chat("solo"))
    assert err.value.headers["retry-after"] == "30"  # relayed to the client as it came
    assert sleep.waits == []
    assert await sim.models_asked() == ["model-a"]


@pytest.mark.asyncio
async def test_deadline_stops_retries(
    make_router: MakeRouter, sim: Sim, sleep: RecordingSleep
) -> None:
    router = await make_router(
        _retrying(max_attempts=5, base_delay=0.6, max_delay=10, deadline=1.5), rng=CeilingRng()
    )
    await sim.fault(kind="status", status=503, count=None)
    with pytest.raises(UpstreamUnavailable):
        await router.chat(chat("solo"))
    # 0.6 fits in the 1.5 s deadline; the next wait (1.2) would end past it.
    assert sleep.waits == [0.6]
    assert await sim.models_asked() == ["model-a"] * 2


@pytest.mark.asyncio
async def test_non_retryable_failure_is_not_retried(
    make_router: MakeRouter, sim: Sim, sleep: RecordingSleep
) -> None:
    router = await make_router(_retrying(max_attempts=3))
    await sim.fault(kind="status", status=400, count=None)
    with pytest.raises(InvalidRequest):
        await router.chat(chat("pair"))
    assert sleep.waits == []
    assert await sim.models_asked() == ["model-a"]


@pytest.mark.asyncio
async def test_rejected_credentials_stop_without_fallback_on(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router("models:\n  pair: {targets: [first/model-a, second/model-b]}\n")
    await sim.fault(kind="status", status=401, match_model="model-a")
    with pytest.raises(UpstreamRejected):
        await router.chat(chat("pair"))


@pytest.mark.asyncio
async def test_fallback_on_passes_a_rejected_request_to_the_next_target_once(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router(
        """
models:
  pair:
    fallback_on: [upstream_rejected]
    retry: {max_attempts: 3}
    targets: [first/model-a, second/model-b]
"""
    )
    await sim.fault(kind="status", status=401, match_model="model-a", count=None)
    routed = await router.chat(chat("pair"))
    assert routed.route.header() == "second/model-b; tried=first/model-a:502"
    assert await sim.models_asked() == ["model-a", "model-b"]
    # A rejection says nothing about the target's health: its breaker saw no failure.
    first = next(t for t in router.status().targets if t.target == "first/model-a")
    assert first.window_requests == 0 and first.consecutive_failures == 0


class _Refusing(OpenAICompatible):
    """A real upstream call whose answer comes back as a content-filter refusal."""

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        answer = await super().chat(request)
        for choice in answer.choices:
            choice.finish_reason = "content_filter"
        return answer


@pytest.mark.asyncio
async def test_content_filter_refusal_falls_over_when_the_alias_says_so(
    make_router: MakeRouter, sim: Sim
) -> None:
    text = """
models:
  strict: {targets: [first/model-a, second/model-b]}
  lenient: {fallback_on: [content_filter], targets: [first/model-a, second/model-b]}
"""
    config = ProviderConfig(preset="simulator", base_url="http://sim/v1")
    refusing = _Refusing("first", config, transport=sim.transport)
    router = await make_router(text, providers={"first": refusing})
    strict = await router.chat(chat("strict"))
    lenient = await router.chat(chat("lenient"))
    assert strict.route.header() == "first/model-a"
    assert strict.response.choices[0].finish_reason == "content_filter"
    assert lenient.route.header() == "second/model-b; tried=first/model-a:content_filter"
    assert lenient.response.choices[0].finish_reason == "stop"
