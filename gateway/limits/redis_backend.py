"""Rate-limit buckets in Redis, so that every ingress replica enforces the same limits.

One Lua script call per request checks and charges all of its buckets atomically (a request
that fails one limit uses up none). The time is Redis's own (`TIME`), so replicas whose clocks
disagree still agree on the buckets; tests pass `clock` to control it. Each key expires once
its bucket would be full again, when it carries no information.

All of a request's buckets go to one script call, so with Redis Cluster they would need one
hash slot; raygate expects a single Redis (with Sentinel or a managed failover if wanted).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from gateway.limits.backend import Acquisition, Charge, StoreUnavailable
from gateway.limits.config import RateStoreConfig

# Shared by both scripts: ARGV[1] is "now" in µs, or "" for the server's clock. Numbers are
# formatted with %.0f because Lua's tostring would print 1.7e15 in exponent notation.
_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local function store(key, after)
  if after > 0 then
    local ttl_ms = math.floor(after / 1000) + 1000
    redis.call('SET', key, string.format('%.0f', now + after), 'PX', ttl_ms)
  else
    redis.call('DEL', key)
  end
end
"""

# KEYS: buckets. ARGV[2i], ARGV[2i+1]: bucket i's cost and tolerance (µs).
# Returns {allowed (0/1), now, backlog_1, ..., backlog_n}.
_ACQUIRE = (
    _NOW
    + """
local backlogs = {}
local allowed = 1
for i, key in ipairs(KEYS) do
  local backlog = math.max(tonumber(redis.call('GET', key) or 0) - now, 0)
  backlogs[i] = backlog
  if backlog + tonumber(ARGV[2 * i]) > tonumber(ARGV[2 * i + 1]) then
    allowed = 0
  end
end
if allowed == 1 then
  for i, key in ipairs(KEYS) do
    store(key, backlogs[i] + tonumber(ARGV[2 * i]))
  end
end
local reply = {allowed, string.format('%.0f', now)}
for i = 1, #KEYS do
  reply[#reply + 1] = string.format('%.0f', backlogs[i])
end
return reply
"""
)

# KEYS: buckets. ARGV[i + 1]: signed shift of bucket i's TAT (µs); a TAT never goes below now.
_ADJUST = (
    _NOW
    + """
for i, key in ipairs(KEYS) do
  store(key, math.max(tonumber(redis.call('GET', key) or 0) - now, 0) + tonumber(ARGV[i + 1]))
end
return 1
"""
)


class RedisBackend:
    """GCRA buckets in Redis.

    After a failure the store is not tried again for `retry_interval_s` (every call raises
    StoreUnavailable at once), so an outage costs one timeout per interval, not one per
    request. `clock` (seconds) replaces Redis's `TIME`, for tests; `monotonic` times the
    retry interval.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = 0.5,
        retry_interval_s: float = 1.0,
        key_prefix: str = "raygate:rl:",
        clock: Callable[[], float] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # One immediate retry replaces a pooled connection that a Redis restart closed;
            # the default backoff would hold requests for seconds while Redis is down.
            retry=Retry(NoBackoff(), 1),
        )
        self._acquire = self._client.register_script(_ACQUIRE)
        self._adjust = self._client.register_script(_ADJUST)
        self._prefix = key_prefix
        self._clock = clock
        self._monotonic = monotonic
        self._retry_interval_s = retry_interval_s
        self._down_until: float | None = None

    @classmethod
    def from_config(
        cls, config: RateStoreConfig, *, clock: Callable[[], float] | None = None
    ) -> RedisBackend:
        """A backend for `config.url` with the config's timeouts and key prefix."""
        if config.url is None:
            raise ValueError("rate_limits.store.url is not set")
        return cls(
            config.url,
            timeout_s=config.timeout_s,
            retry_interval_s=config.retry_interval_s,
            key_prefix=config.key_prefix,
            clock=clock,
        )

    def _now_arg(self) -> str:
        return "" if self._clock is None else str(int(self._clock() * 1_000_000))

    async def acquire(self, charges: Sequence[Charge]) -> Acquisition:
        """Apply every charge if each fits, else none (see `RateBackend.acquire`)."""
        args: list[str | int] = [self._now_arg()]
        for charge in charges:
            args += [charge.cost_us, charge.tolerance_us]
        reply = await self._call(self._acquire, [self._prefix + c.key for c in charges], args)
        return Acquisition(int(reply[0]) == 1, tuple(int(b) for b in reply[2:]))

    async def adjust(self, shifts: Sequence[tuple[str, int]]) -> None:
        """Shift TATs by signed µs, never below now (see `RateBackend.adjust`)."""
        args: list[str | int] = [self._now_arg(), *(shift for _, shift in shifts)]
        await self._call(self._adjust, [self._prefix + key for key, _ in shifts], args)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _call(self, script: AsyncScript, keys: list[str], args: list[str | int]) -> list[Any]:
        if self._down_until is not None and self._monotonic() < self._down_until:
            raise StoreUnavailable("rate-limit store marked down after a recent failure")
        try:
            reply = await script(keys=keys, args=args)
        except (RedisError, OSError) as error:
            self._down_until = self._monotonic() + self._retry_interval_s
            raise StoreUnavailable(f"{type(error).__name__}: {error}") from error
        self._down_until = None
        return reply
