"""Rate limits per key, user, group and model, on the in-process store and on a real Redis.

Time is the test's: the in-process store reads an injected clock, and the Redis store passes
that clock's time to its Lua script in place of the server's TIME.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from gateway.errors import RateLimited
from gateway.identity.principal import Principal
from gateway.limits.config import RateLimitsConfig
from gateway.limits.limiter import LimitDecision, RateLimiter, _duration
from gateway.limits.memory_backend import MemoryBackend
from gateway.limits.redis_backend import RedisBackend


class Clock:
    """Seconds, moved by the test."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


Make = Callable[[dict[str, Any]], RateLimiter]


def person(user: str, *groups: str, key: str | None = None) -> Principal:
    return Principal(user_id=user, auth_method="test", groups=groups, key_id=key)


ALICE = person("alice")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture(params=["memory", "redis"])
async def make(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Make]:
    """Builds limiters on one store of each kind, all on the test's clock."""
    limiters: list[RateLimiter] = []
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    memory = MemoryBackend(clock=clock)

    def build(config: dict[str, Any]) -> RateLimiter:
        backend = memory if url is None else RedisBackend(url, clock=clock)
        limiter = RateLimiter(RateLimitsConfig.model_validate(config), backend)
        limiters.append(limiter)
        return limiter

    yield build
    for limiter in limiters:
        await limiter.close()


async def refused(limiter: RateLimiter, principal: Principal, model: str = "m", **kw: Any) -> Any:
    with pytest.raises(RateLimited) as error:
        await limiter.check(principal, model, tokens_estimate=kw.get("tokens", 0))
    return error.value


@pytest.mark.asyncio
async def test_requests_per_minute_per_user(make: Make, clock: Clock) -> None:
    limiter = make({"per_user": {"rpm": 3}})
    for _ in range(3):
        await limiter.check(ALICE, "m", tokens_estimate=0)
    error = await refused(limiter, ALICE)
    assert error.status == 429 and error.code == "rate_limit_exceeded"
    assert "user 'alice' on requests per minute: limit 3, remaining 0" in error.message
    # The bucket refills one request every 20 s: that is exactly the wait.
    assert error.headers["retry-after"] == "20"
    assert error.headers["retry-after-ms"] == "20000"
    await limiter.check(person("bob"), "m", tokens_estimate=0)  # bob has his own bucket
    clock.now += 19.999
    await refused(limiter, ALICE)
    clock.now += 0.001
    await limiter.check(ALICE, "m", tokens_estimate=0)


@pytest.mark.asyncio
async def test_tokens_per_minute_and_their_retry_after(make: Make, clock: Clock) -> None:
    limiter = make({"per_user": {"tpm": 1000}})
    await limiter.check(ALICE, "m", tokens_estimate=400)
    await limiter.check(ALICE, "m", tokens_estimate=400)
    error = await refused(limiter, ALICE, tokens=400)
    # 800 of 1000 used; 400 more fit once 200 have refilled: 200 / (1000 per minute) = 12 s.
    assert error.headers["retry-after"] == "12"
    assert error.headers["x-ratelimit-remaining-tokens"] == "200"
    await limiter.check(ALICE, "m", tokens_estimate=200)


@pytest.mark.asyncio
async def test_recorded_tokens_replace_the_estimate(make: Make, clock: Clock) -> None:
    limiter = make({"per_user": {"tpm": 1000}})
    first = await limiter.check(ALICE, "m", tokens_estimate=400)
    await limiter.check(ALICE, "m", tokens_estimate=400)
    await refused(limiter, ALICE, tokens=400)
    await limiter.record_tokens(first, 100)  # it used 100, not 400: 300 come back
    third = await limiter.check(ALICE, "m", tokens_estimate=400)
    assert third.tokens is not None and third.tokens.remaining == 100
    # A call that used more than estimated leaves a debt that later requests wait for.
    await limiter.record_tokens(third, 700)
    error = await refused(limiter, ALICE, tokens=0)
    assert error.headers["x-ratelimit-remaining-tokens"] == "0"
    assert error.headers["retry-after"] == "12"  # 1200 tokens owed, 200 over the bucket


@pytest.mark.asyncio
async def test_a_refund_never_raises_a_bucket_above_full(make: Make) -> None:
    limiter = make({"per_user": {"tpm": 1000}})
    decision = await limiter.check(ALICE, "m", tokens_estimate=500)
    await limiter.record_tokens(decision, 0)  # the call failed: nothing was used
    await limiter.record_tokens(decision, 0)
    after = await limiter.check(ALICE, "m", tokens_estimate=1000)
    assert after.tokens is not None and after.tokens.remaining == 0
    await refused(limiter, ALICE, tokens=1)


@pytest.mark.asyncio
async def test_headers_show_the_tightest_limit_of_each_kind(make: Make, clock: Clock) -> None:
    limiter = make({"per_user": {"rpm": 10, "tpm": 1000}, "per_key": {"rpm": 100}})
    caller = person("alice", key="k1")
    decision = await limiter.check(caller, "m", tokens_estimate=100)
    assert decision.headers() == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "9",
        "x-ratelimit-reset-requests": "6s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "6s",
    }
    clock.now += 3
    decision = await limiter.check(caller, "m", tokens_estimate=250)
    headers = decision.headers()
    # 3 s of the first 6 have refilled: 9 s of backlog, 8.5 requests left (8 whole ones).
    assert headers["x-ratelimit-remaining-requests"] == "8"
    assert headers["x-ratelimit-reset-requests"] == "9s"
    assert headers["x-ratelimit-remaining-tokens"] == "700"
    assert headers["x-ratelimit-reset-tokens"] == "18s"


@pytest.mark.asyncio
async def test_a_refusal_charges_no_limit_at_all(make: Make) -> None:
    limiter = make({"per_user": {"rpm": 10}, "models": {"gpt-4o": {"rpm": 1}}})
    await limiter.check(ALICE, "gpt-4o", tokens_estimate=0)
    error = await refused(limiter, ALICE, "gpt-4o")
    assert "model 'gpt-4o'" in error.message
    # The refused request did not use alice's own allowance: 8 left after two admitted.
    decision = await limiter.check(ALICE, "other", tokens_estimate=0)
    assert decision.requests is not None and decision.requests.remaining == 8


@pytest.mark.asyncio
async def test_a_group_limit_is_shared_by_its_members(make: Make) -> None:
    limiter = make({"groups": {"contractors": {"rpm": 2}}})
    await limiter.check(person("carol", "contractors"), "m", tokens_estimate=0)
    await limiter.check(person("dave", "contractors"), "m", tokens_estimate=0)
    error = await refused(limiter, person("erin", "contractors"))
    assert "group 'contractors'" in error.message
    await limiter.check(person("frank", "staff"), "m", tokens_estimate=0)


@pytest.mark.asyncio
async def test_per_member_rates_are_each_members_own_and_the_strictest_wins(make: Make) -> None:
    limiter = make(
        {
            "per_user": {"rpm": 100},
            "users": {"dave": {"rpm": 5}},
            "groups": {
                "contractors": {"per_member": {"rpm": 1, "tpm": 5000}},
                "interns": {"per_member": {"rpm": 3, "tpm": 100}},
            },
        }
    )
    erin = person("erin", "contractors", "interns")
    decision = await limiter.check(erin, "m", tokens_estimate=10)
    assert decision.requests is not None and decision.requests.limit == 1
    assert decision.tokens is not None and decision.tokens.limit == 100
    await refused(limiter, erin)
    await limiter.check(person("carol", "contractors"), "m", tokens_estimate=0)
    dave = await limiter.check(person("dave", "contractors"), "m", tokens_estimate=0)
    assert dave.requests is not None and dave.requests.limit == 5  # listed by name
    bob = await limiter.check(person("bob"), "m", tokens_estimate=0)
    assert bob.requests is not None and bob.requests.limit == 100


@pytest.mark.asyncio
async def test_key_limits_apply_per_key(make: Make) -> None:
    limiter = make({"per_key": {"rpm": 1}, "keys": {"batch": {"rpm": 2}}})
    await limiter.check(person("alice", key="k1"), "m", tokens_estimate=0)
    error = await refused(limiter, person("alice", key="k1"))
    assert "API key 'k1'" in error.message
    await limiter.check(person("alice", key="k2"), "m", tokens_estimate=0)
    await limiter.check(person("alice"), "m", tokens_estimate=0)  # no key: no key limit
    await limiter.check(person("bot", key="batch"), "m", tokens_estimate=0)
    await limiter.check(person("bot", key="batch"), "m", tokens_estimate=0)


@pytest.mark.asyncio
async def test_a_models_limits_are_shared_and_per_user(make: Make) -> None:
    config = {"models": {"gpt-4o": {"tpm": 1000, "per_user": {"rpm": 1}}}}
    limiter = make(config)
    await limiter.check(ALICE, "gpt-4o", tokens_estimate=600)
    error = await refused(limiter, ALICE, "gpt-4o")
    assert "user 'alice' on 'gpt-4o'" in error.message
    error = await refused(limiter, person("bob"), "gpt-4o", tokens=600)
    assert "model 'gpt-4o'" in error.message
    await limiter.check(person("bob"), "gpt-4o", tokens_estimate=400)
    await limiter.check(ALICE, "gpt-4o-mini", tokens_estimate=5000)


@pytest.mark.asyncio
async def test_a_request_larger_than_a_token_limit_is_refused_without_a_retry_time(
    make: Make,
) -> None:
    limiter = make({"per_user": {"tpm": 1000}})
    error = await refused(limiter, ALICE, tokens=1001)
    assert "Request too large" in error.message
    assert error.headers == {"x-should-retry": "false"}


@pytest.mark.asyncio
async def test_without_limits_every_request_passes_with_no_headers(make: Make) -> None:
    limiter = make({"per_user": {"rpm": 1}})
    decision = await limiter.check(ALICE, "m", tokens_estimate=10)
    assert decision.headers()["x-ratelimit-limit-requests"] == "1"
    unlimited = make({})
    assert (await unlimited.check(ALICE, "m", tokens_estimate=10**9)).headers() == {}


@pytest.mark.asyncio
async def test_recording_tokens_needs_no_store_when_nothing_changed(make: Make) -> None:
    limiter = make({"per_user": {"tpm": 1000}})
    await limiter.record_tokens(LimitDecision(tokens_estimate=5), 50)  # no token limits
    decision = await limiter.check(ALICE, "m", tokens_estimate=50)
    await limiter.record_tokens(decision, 50)
    assert (await limiter.check(ALICE, "m", tokens_estimate=0)).headers()[
        "x-ratelimit-remaining-tokens"
    ] == "950"


def test_reset_durations_read_like_openais() -> None:
    assert _duration(0) == "0s"
    assert _duration(19_400) == "20ms"
    assert _duration(1_500_000) == "1.5s"
    assert _duration(6_000_000) == "6s"
    assert _duration(360_000_000) == "6m0s"
    assert _duration(3_600_000_000) == "1h0m0s"
    assert _duration(61_250_000) == "1m1.25s"


def test_from_config_picks_the_store_the_config_names() -> None:
    config = RateLimitsConfig.model_validate({"store": {"url": "redis://127.0.0.1:1/0"}})
    assert isinstance(RateLimiter.from_config(config)._backend, RedisBackend)
    assert isinstance(RateLimiter.from_config(RateLimitsConfig())._backend, MemoryBackend)
    with pytest.raises(ValueError, match="redis://"):
        RateLimitsConfig.model_validate({"store": {"url": "http://redis"}})
