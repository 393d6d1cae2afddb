"""The Redis store: one limit across replicas, on Redis's own clock, and Redis going away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from gateway.errors import RateLimited
from gateway.identity.principal import Principal
from gateway.limits.backend import Charge, StoreUnavailable
from gateway.limits.config import RateLimitsConfig
from gateway.limits.limiter import RateLimiter, RateLimitStoreUnavailable
from gateway.limits.redis_backend import RedisBackend
from tests.servers.redis import RedisServer, redis_binary

ALICE = Principal(user_id="alice", auth_method="test")


def limiter(url: str, **store: object) -> RateLimiter:
    """A limiter as an ingress replica builds it: its own connection pool, Redis's clock."""
    config = RateLimitsConfig.model_validate(
        {"per_user": {"rpm": 5, "tpm": 10_000}, "store": {"url": url, **store}}
    )
    return RateLimiter.from_config(config)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which the test may stop."""
    with RedisServer.start(redis_binary(), tmp_path / "redis") as server:
        yield server


async def admitted(replica: RateLimiter) -> bool:
    try:
        await replica.check(ALICE, "m", tokens_estimate=0)
    except RateLimited:
        return False
    return True


@pytest.mark.asyncio
async def test_two_replicas_sharing_redis_enforce_one_limit(redis_url: str) -> None:
    # Redis's own TIME: at 5 per minute nothing refills during the few ms this test takes.
    first, second = limiter(redis_url), limiter(redis_url)
    try:
        results = await asyncio.gather(*(admitted(r) for r in [first, second] * 10))
        assert sum(results) == 5
        assert not await admitted(first) and not await admitted(second)
    finally:
        await first.close()
        await second.close()


@pytest.mark.asyncio
async def test_keys_expire_once_their_bucket_is_full_again(redis_url: str) -> None:
    replica = limiter(redis_url, key_prefix="test:")
    try:
        await replica.check(ALICE, "m", tokens_estimate=0)
    finally:
        await replica.close()
    with redis.Redis.from_url(redis_url) as client:
        assert client.keys("test:*") == [b"test:user:alice:requests"]
        # One request at 5 per minute: full again in 12 s; the key lives 1 s longer.
        assert 12_000 < client.pttl("test:user:alice:requests") <= 13_000


@pytest.mark.asyncio
async def test_failure_mode_open_admits_while_redis_is_down(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    replica = limiter(own_redis.url, failure_mode="open", retry_interval_s=0)
    try:
        assert (await replica.check(ALICE, "m", tokens_estimate=0)).headers()
        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="gateway.limits.limiter"):
            for _ in range(3):
                decision = await replica.check(ALICE, "m", tokens_estimate=0)
                assert not decision.store_available and decision.headers() == {}
                await replica.record_tokens(decision, 100)  # nothing to correct: no error
        assert replica.store_failures == 3
        warnings = [r for r in caplog.records if "rate-limit store unreachable" in r.message]
        assert len(warnings) == 1  # once per warn_interval_s, not once per request
        own_redis.run()  # back, empty: limits apply again
        decision = await replica.check(ALICE, "m", tokens_estimate=0)
        assert decision.store_available
        assert decision.headers()["x-ratelimit-remaining-requests"] == "4"
    finally:
        await replica.close()


@pytest.mark.asyncio
async def test_failure_mode_closed_refuses_with_503_while_redis_is_down(
    own_redis: RedisServer,
) -> None:
    replica = limiter(own_redis.url, failure_mode="closed", retry_interval_s=0)
    try:
        decision = await replica.check(ALICE, "m", tokens_estimate=0)
        own_redis.stop()
        with pytest.raises(RateLimitStoreUnavailable) as refused:
            await replica.check(ALICE, "m", tokens_estimate=0)
        body = refused.value.to_body()["error"]
        assert refused.value.status == 503
        assert (body["type"], body["code"]) == ("api_error", "rate_limit_store_unavailable")
        await replica.record_tokens(decision, 100)  # after the answer: never raises
        assert replica.store_failures == 2
    finally:
        await replica.close()


@pytest.mark.asyncio
async def test_after_a_failure_redis_is_not_retried_until_the_interval_passed(
    own_redis: RedisServer,
) -> None:
    monotonic = [0.0]
    backend = RedisBackend(own_redis.url, retry_interval_s=5, monotonic=lambda: monotonic[0])
    charge = [Charge("user:alice:requests", 1)]
    try:
        own_redis.stop()
        with pytest.raises(StoreUnavailable, match="ConnectionError"):
            await backend.acquire(charge)
        own_redis.run()
        monotonic[0] = 4.9
        with pytest.raises(StoreUnavailable, match="marked down"):
            await backend.acquire(charge)  # no network round trip, no timeout to wait for
        monotonic[0] = 5.0
        assert (await backend.acquire(charge)).allowed
    finally:
        await backend.close()
