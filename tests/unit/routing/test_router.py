"""The router over real provider adapters and the in-process simulator: order and fallback."""

from __future__ import annotations

import pytest
import pytest_asyncio

from gateway.errors import InvalidRequest, ModelNotFound, UpstreamError, UpstreamUnavailable
from gateway.routing.router import Router
from tests.support.simulator import Sim
from tests.unit.routing.support import MakeRouter, chat, drain

MODELS = """
models:
  pair: {targets: [first/model-a, second/model-b]}
  solo: {targets: [first/model-a]}
"""


@pytest_asyncio.fixture
async def router(make_router: MakeRouter) -> Router:
    return await make_router(MODELS)


@pytest.mark.asyncio
async def test_first_target_answers_under_the_alias_name(router: Router, sim: Sim) -> None:
    routed = await router.chat(chat("pair"))
    assert routed.route.header() == "first/model-a"
    assert routed.response.model == "pair"
    assert await sim.models_asked() == ["model-a"]


@pytest.mark.asyncio
async def test_retryable_failure_falls_over_to_the_next_target(router: Router, sim: Sim) -> None:
    await sim.fault(kind="status", status=503, match_model="model-a")
    routed = await router.chat(chat("pair"))
    assert routed.route.header() == "second/model-b; tried=first/model-a:503"
    assert await sim.models_asked() == ["model-a", "model-b"]


@pytest.mark.asyncio
async def test_client_error_is_not_retried_on_another_target(router: Router, sim: Sim) -> None:
    await sim.fault(kind="status", status=400, match_model="model-a")
    with pytest.raises(InvalidRequest):
        await router.chat(chat("pair"))
    assert await sim.models_asked() == ["model-a"]


@pytest.mark.asyncio
async def test_every_target_failing_raises_the_last_error_naming_all(
    router: Router, sim: Sim
) -> None:
    await sim.fault(kind="status", status=503, count=2)
    with pytest.raises(UpstreamUnavailable) as err:
        await router.chat(chat("pair"))
    assert "first/model-a:503" in err.value.message and "second/model-b:503" in err.value.message


@pytest.mark.asyncio
async def test_unknown_alias_is_model_not_found(router: Router) -> None:
    with pytest.raises(ModelNotFound):
        await router.chat(chat("nope"))


@pytest.mark.asyncio
async def test_stream_yields_route_first_then_chunks_renamed(router: Router) -> None:
    route, chunks = await drain(router.chat_stream(chat("solo", stream=True)))
    assert route.header() == "first/model-a"
    assert chunks and all(c.model == "solo" for c in chunks)
    assert chunks[-1].usage is not None  # the adapter always asks the upstream for usage


@pytest.mark.asyncio
async def test_stream_failure_before_first_chunk_falls_over(router: Router, sim: Sim) -> None:
    await sim.fault(kind="status", status=502, match_model="model-a")
    route, chunks = await drain(router.chat_stream(chat("pair", stream=True)))
    assert route.header() == "second/model-b; tried=first/model-a:502"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.asyncio
async def test_stream_failure_after_first_chunk_reaches_the_caller(
    router: Router, sim: Sim
) -> None:
    await sim.fault(kind="malformed", after_chunks=2, match_model="model-a")
    stream = await router.chat_stream(chat("pair", stream=True))
    assert stream.route.header() == "first/model-a"  # committed: no fallback after the first chunk
    with pytest.raises(UpstreamError, match="malformed"):
        async for _ in stream.chunks:
            pass
    assert await sim.models_asked() == ["model-a"]
