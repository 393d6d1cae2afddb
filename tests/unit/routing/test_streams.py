"""Streams commit on the first chunk: failures before it fall over, failures after it reach
the caller (and count against the target)."""

from __future__ import annotations

import pytest

from gateway.config import ProviderConfig, Timeouts, parse_config
from gateway.errors import UpstreamError
from gateway.protocol.openai import CompletionRequest
from gateway.providers.registry import build_provider
from gateway.routing.router import Router
from gateway.routing.status import TargetStatus
from gateway.simulator import SimulatorSettings, create_app
from tests.support.simulator import Sim, add_faults, serve
from tests.support.simulator import received as received_requests
from tests.unit.routing.support import PROVIDERS, FakeClock, MakeRouter, chat, drain

PAIR = "models:\n  pair: {targets: [first/model-a, second/model-b]}\n"


def _target(router: Router, label: str) -> TargetStatus:
    return next(t for t in router.status().targets if t.target == label)


@pytest.mark.asyncio
async def test_first_token_timeout_falls_over_to_the_next_target(
    make_router: MakeRouter, sim: Sim
) -> None:
    impatient = build_provider(
        "first",
        ProviderConfig(
            preset="simulator", base_url="http://sim/v1", timeouts=Timeouts(first_token=0.2)
        ),
        transport=sim.transport,
    )
    router = await make_router(PAIR, providers={"first": impatient})
    await sim.fault(kind="hang", match_model="model-a")
    route, chunks = await drain(router.chat_stream(chat("pair", stream=True)))
    assert route.header() == "second/model-b; tried=first/model-a:504"
    assert chunks and all(c.model == "pair" for c in chunks)
    assert _target(router, "first/model-a").consecutive_failures == 1


@pytest.mark.asyncio
async def test_completion_stream_falls_over_before_the_first_chunk(
    make_router: MakeRouter, sim: Sim
) -> None:
    router = await make_router(PAIR)
    await sim.fault(kind="status", status=500, match_model="model-a")
    request = CompletionRequest(model="pair", prompt="hello", stream=True)
    route, chunks = await drain(router.completion_stream(request))
    assert route.header() == "second/model-b; tried=first/model-a:502"
    assert chunks and all(c.model == "pair" for c in chunks)


@pytest.mark.asyncio
async def test_connection_cut_mid_stream_reaches_the_caller_and_counts_against_the_target() -> None:
    # A dropped TCP connection needs a real server: the simulator on a loopback port.
    with serve(create_app(SimulatorSettings(seed=1))) as url:
        config = ProviderConfig(preset="simulator", base_url=f"{url}/v1")
        providers = {name: build_provider(name, config) for name in ("first", "second")}
        router = Router(parse_config(PROVIDERS + PAIR, env={}), providers)
        try:
            await add_faults(url, {"kind": "cut", "after_chunks": 2, "match_model": "model-a"})
            stream = await router.chat_stream(chat("pair", stream=True))
            assert stream.route.header() == "first/model-a"
            received = []
            with pytest.raises(UpstreamError, match=r"broke|ended before"):
                async for chunk in stream.chunks:
                    received.append(chunk)
            assert len(received) >= 1  # the chunks before the cut reached the caller
            status = _target(router, "first/model-a")
            assert status.consecutive_failures == 1 and status.failure_rate == 1.0
            assert status.in_flight == 0
            sent = [r["json"]["model"] for r in await received_requests(url) if r["json"]]
            assert sent == ["model-a"]  # what was committed was not sent anywhere else
        finally:
            await router.aclose()


@pytest.mark.asyncio
async def test_a_stream_abandoned_by_its_client_frees_its_probe_slot(
    make_router: MakeRouter, sim: Sim, clock: FakeClock
) -> None:
    router = await make_router("routing:\n  breaker: {min_requests: 1, cooldown: 5}\n" + PAIR)
    await sim.fault(kind="status", status=503, match_model="model-a")
    await router.chat(chat("pair"))
    assert _target(router, "first/model-a").breaker == "open"
    clock.advance(5)
    probe = await router.chat_stream(chat("pair", stream=True))
    assert probe.route.target == "first/model-a"
    await probe.aclose()
    status = _target(router, "first/model-a")
    assert (status.breaker, status.in_flight) == ("half_open", 0)
    routed = await router.chat(chat("pair"))  # the slot is free for the next probe
    assert routed.route.header() == "first/model-a"
    assert _target(router, "first/model-a").breaker == "closed"
