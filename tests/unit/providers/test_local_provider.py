"""Local models on the router's side, without Ray or vLLM: configuration, the `local`
provider over an injected transport, the replica in the route, and engine-time pricing.

The transport here is `SimEngines`: the in-process upstream simulator answering as replica
`r1` would, with a switch that makes it unavailable the way Serve reports a saturated or
dead deployment (a retryable 503).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from gateway.accounting.config import PricingConfig
from gateway.accounting.pricing import PriceTable
from gateway.config import ConfigError, ProviderConfig, parse_config
from gateway.errors import UnsupportedParameter, UpstreamTimeout, UpstreamUnavailable
from gateway.protocol.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    Usage,
)
from gateway.providers.local import (
    LocalChatCompletion,
    LocalChatCompletionChunk,
    LocalCompletion,
    LocalProvider,
    LocalUsage,
)
from gateway.providers.registry import build_provider
from gateway.routing.router import Router
from tests.support.simulator import Sim
from tests.unit.routing.support import chat, drain

CONFIG = """
providers:
  sim: {preset: simulator, base_url: "http://sim/v1"}
local_models:
  tiny: {path: models/tiny, device: cpu, cpus: 2, first_token_timeout: 0.2}
models:
  tiny-or-sim: {targets: [local/tiny, sim/sim-backup]}
"""


class SimEngines:
    """`LocalEngines` over the simulator, answering as replica `r1` with 0.5 s of engine time."""

    def __init__(self, sim: Sim) -> None:
        config = ProviderConfig(preset="simulator", base_url="http://sim/v1")
        self._upstream = build_provider("engine", config, transport=sim.transport)
        self.unavailable = False
        self.silent = False  # a stream that never sends its first token
        self.calls = 0
        self.replicas = {"tiny": 1}  # what the Serve controller would say runs

    def _check(self) -> None:
        self.calls += 1
        if self.unavailable:
            raise UpstreamUnavailable("local model 'tiny' is saturated")

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        self._check()
        answer = await self._upstream.chat(request)
        usage = _local_usage(answer.usage)
        return LocalChatCompletion(**{**dict(answer), "usage": usage, "replica": "r1"})

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        self._check()
        if self.silent:
            await asyncio.Event().wait()
        async for chunk in self._upstream.chat_stream(request):
            usage = _local_usage(chunk.usage) if chunk.usage else None
            yield LocalChatCompletionChunk(**{**dict(chunk), "usage": usage, "replica": "r1"})

    async def completion(self, request: CompletionRequest) -> Completion:
        self._check()
        answer = await self._upstream.completion(request)
        usage = _local_usage(answer.usage)
        return LocalCompletion(**{**dict(answer), "usage": usage, "replica": "r1"})

    async def completion_stream(self, request: CompletionRequest) -> AsyncIterator[Completion]:
        self._check()
        async for chunk in self._upstream.completion_stream(request):
            usage = _local_usage(chunk.usage) if chunk.usage else None
            yield LocalCompletion(**{**dict(chunk), "usage": usage, "replica": "r1"})

    async def aclose(self) -> None:
        await self._upstream.aclose()

    async def running(self) -> dict[str, int]:
        return dict(self.replicas)


def _local_usage(usage: Usage | None) -> LocalUsage:
    assert usage is not None
    return LocalUsage(**usage.model_dump(), device="cpu", device_seconds=0.5)


@pytest_asyncio.fixture
async def sim() -> AsyncIterator[Sim]:
    sim = Sim()
    yield sim
    await sim.control.aclose()


@pytest_asyncio.fixture
async def engines(sim: Sim) -> SimEngines:
    return SimEngines(sim)


@pytest_asyncio.fixture
async def router(sim: Sim, engines: SimEngines) -> AsyncIterator[Router]:
    config = parse_config(CONFIG, env={})
    providers: dict[str, Any] = {
        "sim": build_provider("sim", config.providers["sim"], transport=sim.transport),
        "local": LocalProvider(config.local_models, engines),
    }
    router = Router(config, providers)
    yield router
    await router.aclose()


# --- configuration ------------------------------------------------------------------------


def test_a_local_target_names_a_configured_local_model() -> None:
    config = parse_config(CONFIG, env={})
    assert [t.label for t in config.enabled_models()["tiny-or-sim"].targets] == [
        "local/tiny",
        "sim/sim-backup",
    ]
    assert config.local_models["tiny"].path.endswith("/models/tiny")  # made absolute
    assert config.local_models["tiny"].devices_per_replica == 2
    with pytest.raises(ConfigError, match="unknown local model 'huge'"):
        parse_config(CONFIG.replace("[local/tiny,", "[local/huge,"), env={})


def test_local_is_a_reserved_provider_name_and_zero_queue_is_refused() -> None:
    with pytest.raises(ConfigError, match="reserved"):
        parse_config(CONFIG.replace("  sim: {", "  local: {preset: simulator}\n  sim: {"), env={})
    with pytest.raises(ConfigError, match="max_queued_requests"):
        parse_config(CONFIG.replace("cpus: 2,", "cpus: 2, max_queued_requests: 0,"), env={})


def test_gpu_replicas_hold_their_fraction_times_tensor_parallel_workers() -> None:
    text = CONFIG.replace("device: cpu, cpus: 2", "gpus: 0.5")
    assert parse_config(text, env={}).local_models["tiny"].devices_per_replica == 0.5
    text = CONFIG.replace("device: cpu, cpus: 2", "gpus: 1, tensor_parallel_size: 4")
    assert parse_config(text, env={}).local_models["tiny"].devices_per_replica == 4
    with pytest.raises(ConfigError, match="whole GPUs"):
        parse_config(CONFIG.replace("device: cpu", "gpus: 0.5, tensor_parallel_size: 2"), env={})


# --- routing ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_route_names_the_replica_that_answered(router: Router) -> None:
    routed = await router.chat(chat("tiny-or-sim"))
    assert routed.route.header() == "local/tiny@r1"
    body = routed.response.wire()
    assert body["model"] == "tiny-or-sim"
    assert "replica" not in body and "device_seconds" not in body["usage"]


@pytest.mark.asyncio
async def test_a_legacy_completion_names_the_replica_too(router: Router) -> None:
    request = CompletionRequest(model="tiny-or-sim", prompt="hello", max_tokens=4)
    routed = await router.completion(request)
    assert routed.route.header() == "local/tiny@r1"
    assert routed.response.wire()["model"] == "tiny-or-sim"
    route, chunks = await drain(router.completion_stream(request))
    assert route.header() == "local/tiny@r1" and chunks


@pytest.mark.asyncio
async def test_an_unavailable_local_model_falls_over_to_the_provider(
    router: Router, engines: SimEngines, sim: Sim
) -> None:
    engines.unavailable = True
    routed = await router.chat(chat("tiny-or-sim"))
    assert routed.route.header() == "sim/sim-backup; tried=local/tiny:503"
    assert await sim.models_asked() == ["sim-backup"]


@pytest.mark.asyncio
async def test_a_stream_names_the_replica_before_its_first_chunk(router: Router) -> None:
    route, chunks = await drain(router.chat_stream(chat("tiny-or-sim")))
    assert route.header() == "local/tiny@r1"
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    assert isinstance(chunks[-1].usage, LocalUsage)


@pytest.mark.asyncio
async def test_a_local_stream_without_a_first_token_falls_over(
    router: Router, engines: SimEngines
) -> None:
    engines.silent = True  # e.g. queued behind a replica that is still starting
    route, _ = await drain(router.chat_stream(chat("tiny-or-sim")))
    assert route.header() == "sim/sim-backup; tried=local/tiny:504"


@pytest.mark.asyncio
async def test_what_the_engine_does_not_do_is_refused_before_any_call(
    router: Router, engines: SimEngines
) -> None:
    tool = {"type": "function", "function": {"name": "f"}}
    with pytest.raises(UnsupportedParameter) as caught:
        await router.chat(chat("tiny-or-sim", tools=[tool]))
    assert caught.value.param == "tools"
    assert engines.calls == 0


@pytest.mark.asyncio
async def test_a_timeout_of_a_whole_answer_is_a_gateway_timeout(sim: Sim) -> None:
    class Stuck(SimEngines):
        async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
            await asyncio.Event().wait()
            raise AssertionError

    config = parse_config(CONFIG.replace("first_token_timeout: 0.2", "total_timeout: 0.1"), env={})
    provider = LocalProvider(config.local_models, Stuck(sim))
    with pytest.raises(UpstreamTimeout, match=r"within 0\.1s"):
        await provider.chat(chat("tiny"))
    await provider.aclose()


# --- pricing ------------------------------------------------------------------------------


def test_local_usage_is_priced_by_engine_seconds_of_its_device() -> None:
    prices = PriceTable.from_config(
        PricingConfig(gpu_second_usd=0.001, cpu_second_usd=0.00002), provider_presets={}
    )
    on_gpu = LocalUsage(prompt_tokens=10, completion_tokens=90, device="gpu", device_seconds=2)
    on_cpu = LocalUsage(prompt_tokens=10, completion_tokens=90, device="cpu", device_seconds=2)
    assert prices.cost_of_usage("local/tiny", on_gpu) == pytest.approx(0.002)
    assert prices.cost_of_usage("local/tiny", on_cpu) == pytest.approx(0.00004)
    unpriced = PriceTable.from_config(PricingConfig(), provider_presets={})
    assert unpriced.cost_of_usage("local/tiny", on_gpu) is None


def test_an_upstream_cannot_ask_to_be_priced_by_seconds() -> None:
    prices = PriceTable.from_config(PricingConfig(gpu_second_usd=1000.0), provider_presets={})
    usage = Usage.model_validate(
        {"prompt_tokens": 1_000_000, "completion_tokens": 0, "device_seconds": 0}
    )
    assert prices.cost_of_usage("openai/gpt-4o-mini", usage) == pytest.approx(0.15)


def test_a_local_model_is_a_model_of_its_own_name_unless_an_alias_takes_it() -> None:
    text = CONFIG.replace("local_models:\n", "local_models:\n  other: {path: m/other}\n")
    models = parse_config(text, env={}).enabled_models()
    assert [t.label for t in models["other"].targets] == ["local/other"]
    assert [t.label for t in models["tiny-or-sim"].targets] == ["local/tiny", "sim/sim-backup"]
    assert "tiny" in models  # no alias named tiny: the model itself


@pytest.mark.asyncio
async def test_a_model_without_its_replica_is_named_until_one_runs(
    router: Router, engines: SimEngines
) -> None:
    engines.replicas = {"tiny": 0}
    assert await router.not_ready() == ["local model 'tiny': no running replica yet"]
    engines.replicas = {"tiny": 1}
    assert await router.not_ready() == []


@pytest.mark.asyncio
async def test_a_model_that_scales_to_zero_is_ready_with_none(sim: Sim) -> None:
    config = parse_config(
        CONFIG.replace("first_token_timeout: 0.2}", "autoscaling: {min_replicas: 0}}"), env={}
    )
    engines = SimEngines(sim)
    engines.replicas = {"tiny": 0}
    provider = LocalProvider(config.local_models, engines)
    assert await provider.not_ready() == []


def test_a_request_waits_for_a_replica_only_of_a_model_that_scales_to_zero() -> None:
    always = parse_config(CONFIG, env={}).local_models["tiny"]
    assert always.wait_for_replica_s == 0  # none running means lost: fall over at once
    to_zero = parse_config(
        CONFIG.replace("first_token_timeout: 0.2}", "autoscaling: {min_replicas: 0}}"), env={}
    ).local_models["tiny"]
    assert to_zero.wait_for_replica_s == to_zero.first_token_timeout  # woken: worth the wait
    told = parse_config(CONFIG.replace("0.2}", "0.2, scale_up_wait_s: 7}"), env={})
    assert told.local_models["tiny"].wait_for_replica_s == 7
