"""Routing fixtures: the simulator in process, and routers over it with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gateway.config import parse_config
from gateway.providers.base import Provider
from gateway.providers.registry import build_provider
from gateway.routing.router import Router
from tests.support.simulator import Sim
from tests.unit.routing.support import PROVIDERS, FakeClock, MakeRouter, RecordingSleep


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    sim = Sim()
    yield sim
    await sim.control.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


@pytest_asyncio.fixture
async def make_router(
    sim: Sim, clock: FakeClock, sleep: RecordingSleep
) -> AsyncIterator[MakeRouter]:
    """Build routers from YAML (the `models:` / `routing:` part) over the simulator.

    Keyword arguments reach `Router` and override the fake clock and sleep; `providers`
    replaces adapters by name.
    """
    routers: list[Router] = []

    async def make(text: str, *, providers: dict[str, Provider] | None = None, **kw: Any) -> Router:
        config = parse_config(PROVIDERS + text, env={})
        adapters = {
            name: build_provider(name, p, transport=sim.transport)
            for name, p in config.providers.items()
        }
        adapters.update(providers or {})
        options: dict[str, Any] = {"clock": clock, "sleep": sleep, **kw}
        router = Router(config, adapters, **options)
        routers.append(router)
        return router

    yield make
    for router in routers:
        await router.aclose()
