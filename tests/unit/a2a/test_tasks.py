"""Who started which A2A task, on SQLite and PostgreSQL: the first claim holds, another
caller does not own it, and an old claim is forgotten after the TTL."""

from __future__ import annotations

import pytest

from gateway.a2a.tasks import TaskOwners
from gateway.storage import Database


class Clock:
    """Wall time that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.asyncio
async def test_the_first_caller_to_claim_a_task_owns_it(database_url: str) -> None:
    owners = TaskOwners(Database(database_url), ttl_s=3600, clock=Clock())
    await owners.claim("echo", "t-1", "rita")
    await owners.claim("echo", "t-1", "mallory")  # a later claim changes nothing
    assert await owners.owns("echo", "t-1", "rita")
    assert not await owners.owns("echo", "t-1", "mallory")
    assert not await owners.owns("other-agent", "t-1", "rita")  # tasks are per agent
    assert not await owners.owns("echo", "never-seen", "rita")


@pytest.mark.asyncio
async def test_a_claim_is_forgotten_after_its_ttl(database_url: str) -> None:
    clock = Clock()
    owners = TaskOwners(Database(database_url), ttl_s=60, clock=clock)
    await owners.claim("echo", "t-2", "rita")
    clock.now += 61
    assert not await owners.owns("echo", "t-2", "rita")
    await owners.claim("echo", "t-3", "otto")  # a claim also drops the expired rows
    assert not await owners.owns("echo", "t-2", "rita")
    assert await owners.owns("echo", "t-3", "otto")
