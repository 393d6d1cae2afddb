"""The cache stage's insert: it waits for a cache replica at most `lookup_timeout_s`, and an
insert slower than that goes on off the response path rather than being cancelled (on a busy
machine that lost entries, and the repeat of a question just answered missed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.accounting.pricing import PriceTable
from gateway.api.caching import ResponseCache
from gateway.cache.config import CacheConfig
from gateway.cache.lookup import NewEntry

pytestmark = pytest.mark.asyncio

ENTRY = NewEntry(scope="s", text="Which team owns the VPN?", model="m", response="{}")


class SlowReplica:
    """A cache backend whose inserts end only when `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.stored: list[NewEntry] = []

    async def insert(self, entry: NewEntry) -> int:
        await self.release.wait()
        self.stored.append(entry)
        return len(self.stored)


def _cache(backend: Any, timeout_s: float) -> ResponseCache:
    return ResponseCache(CacheConfig(lookup_timeout_s=timeout_s), backend, prices=PriceTable())


async def test_an_insert_slower_than_the_lookup_timeout_goes_on_and_stores_the_entry() -> None:
    replica = SlowReplica()
    cache = _cache(replica, timeout_s=0.01)  # the insert cannot end before `release`
    pending = await cache.insert(ENTRY)  # returns once the wait is over, the insert not done
    assert pending is not None and not pending.done() and replica.stored == []
    replica.release.set()
    await cache.drain()
    assert replica.stored == [ENTRY]


async def test_an_insert_within_the_timeout_is_done_when_it_returns() -> None:
    replica = SlowReplica()
    replica.release.set()
    assert await _cache(replica, timeout_s=60).insert(ENTRY) is None
    assert replica.stored == [ENTRY]
