"""The router over real provider adapters and the in-process simulator: order and fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.config import parse_config
from gateway.errors import InvalidRequest, ModelNotFound, UpstreamError, UpstreamUnavailable
from gateway.protocol.openai import ChatCompletionRequest
from gateway.providers.registry import build_provider
from gateway.routing.router import Route, Router
from gateway.simulator import SimulatorSettings, create_app

CONFIG = """
providers:
  first: {preset: simulator, base_url: "http://sim/v1"}
  second: {preset: simulator, base_url: "http://sim/v1"}
models:
  pair: {targets: [first/model-a, second/model-b]}
  solo: {targets: [first/model-a]}
"""


class Sim:
    """The simulator app in-process, with its control API."""

    def __init__(self) -> None:
        self.transport = httpx.ASGITransport(app=create_app(SimulatorSettings(seed=1)))
        self.control = httpx.AsyncClient(transport=self.transport, base_url="http://sim")

    async def fault(self, **fault: Any) -> None:
        (await self.control.post("/_sim/faults", json={"faults": [fault]})).raise_for_status()

    async def models_asked(self) -> list[str]:
        requests = (await self.control.get("/_sim/requests")).json()["requests"]
        return [r["json"]["model"] for r in requests if r["json"]]


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    sim = Sim()
    yield sim
    await sim.control.aclose()


@pytest_asyncio.fixture
async def router(sim: Sim) -> AsyncIterator[Router]:
    config = parse_config(CONFIG, env={})
    providers = {
        name: build_provider(name, p, transport=sim.transport)
        for name, p in config.providers.items()
    }
    router = Router(config, providers)
    yield router
    await router.aclose()


def _chat(model: str, **extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest(
        model=model, messages=[{"role": "user", "content": "hello"}], **extra
    )


@pytest.mark.asyncio
async def test_first_target_answers_under_the_alias_name(router: Router, sim: Sim) -> None:
    routed = await router.chat(_chat("pair"))
    assert routed.route.header() == "first/model-a"
    assert routed.response.model == "pair"
    assert await sim.models_asked() == ["model-a"]


@pytest.mark.asyncio
async def test_retryable_failure_falls_over_to_the_next_target(router: Router, sim: Sim) -> None:
    await sim.fault(kind="status", status=503, match_model="model-a")
    routed = await router.chat(_chat("pair"))
    assert routed.route.header() == "second/model-b; tried=first/model-a:503"
    assert await sim.models_asked() == ["model-a", "model-b"]


@pytest.mark.asyncio
async def test_client_error_is_not_retried_on_another_target(router: Router, sim: Sim) -> None:
    await sim.fault(kind="status", status=400, match_model="model-a")
    with pytest.raises(InvalidRequest):
        await router.chat(_chat("pair"))
    assert await sim.models_asked() == ["model-a"]


@pytest.mark.asyncio
async def test_every_target_failing_raises_the_last_error_naming_all(
    router: Router, sim: Sim
) -> None:
    await sim.fault(kind="status", status=503, count=2)
    with pytest.raises(UpstreamUnavailable) as err:
        await router.chat(_chat("pair"))
    assert "first/model-a:503" in err.value.message and "second/model-b:503" in err.value.message


@pytest.mark.asyncio
async def test_unknown_alias_is_model_not_found(router: Router) -> None:
    with pytest.raises(ModelNotFound):
        await router.chat(_chat("nope"))


async def _drain(items: AsyncIterator[Any]) -> tuple[Route, list[Any]]:
    route = await anext(items)
    assert isinstance(route, Route)
    return route, [item async for item in items]


@pytest.mark.asyncio
async def test_stream_yields_route_first_then_chunks_renamed(router: Router) -> None:
    route, chunks = await _drain(router.chat_stream(_chat("solo", stream=True)))
    assert route.header() == "first/model-a"
    assert chunks and all(c.model == "solo" for c in chunks)
    assert chunks[-1].usage is not None  # the adapter always asks the upstream for usage


@pytest.mark.asyncio
async def test_stream_failure_before_first_chunk_falls_over(router: Router, sim: Sim) -> None:
    await sim.fault(kind="status", status=502, match_model="model-a")
    route, chunks = await _drain(router.chat_stream(_chat("pair", stream=True)))
    assert route.header() == "second/model-b; tried=first/model-a:502"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.asyncio
async def test_stream_failure_after_first_chunk_reaches_the_caller(
    router: Router, sim: Sim
) -> None:
    await sim.fault(kind="malformed", after_chunks=2, match_model="model-a")
    items = router.chat_stream(_chat("pair", stream=True))
    route = await anext(items)
    assert route.header() == "first/model-a"  # committed: no fallback after the first chunk
    with pytest.raises(UpstreamError, match="malformed"):
        async for _ in items:
            pass
    assert await sim.models_asked() == ["model-a"]
