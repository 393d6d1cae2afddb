"""The request path's metrics, in process (a `Recorder` in place of Ray's agent): one
observation per request with bounded labels, streams timed to their first token, refusals,
failovers and policy decisions counted where they happen."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.api.exchange import Exchange
from gateway.api.metrics import RequestMetrics
from gateway.cache.embedder import Embedder
from gateway.config import parse_config
from gateway.observability.metrics import Recorder
from gateway.routing.failover import Route
from tests.support.gateway import InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{db}"}}
cache: {{enabled: false}}
policy:
  profiles:
    default:
      pii: {{EMAIL: block}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
  sim-pair: {{targets: [sim/sim-primary, sim/sim-secondary]}}
"""
KEY = {"authorization": "Bearer sk-dev"}
CHAT = "/v1/chat/completions"


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(CONFIG.format(db=tmp_path / "gw.db"), headers=KEY) as gw:
        yield gw


def recorder(gateway: InProcessGateway) -> Recorder:
    metrics = gateway.app.state.metrics
    assert isinstance(metrics, Recorder)
    return metrics


@pytest.mark.asyncio
async def test_an_answered_chat_counts_once_with_its_tokens_latency_and_cost(
    gateway: InProcessGateway,
) -> None:
    response = await gateway.chat("Hello there")
    assert response.status_code == 200
    usage = response.json()["usage"]
    metrics = recorder(gateway)
    tags = {"route": CHAT, "model": "sim-small", "target": "sim/sim-small", "group": "default"}
    assert metrics.value("raygate_requests", status="200", **tags) == 1
    assert metrics.value("raygate_tokens", direction="in") == usage["prompt_tokens"]
    assert metrics.value("raygate_tokens", direction="out") == usage["completion_tokens"]
    assert metrics.value("raygate_cost_usd", model="sim-small") == pytest.approx(
        float(response.headers["x-raygate-cost-usd"])
    )
    (latency,) = metrics.observed("raygate_request_latency_ms", route=CHAT)
    (overhead,) = metrics.observed("raygate_overhead_ms", route=CHAT)
    assert 0 <= overhead <= latency
    assert metrics.observed("raygate_ttft_ms") == []  # not a stream


@pytest.mark.asyncio
async def test_a_stream_is_timed_to_its_first_token_and_counted_when_it_ends(
    gateway: InProcessGateway,
) -> None:
    response = await gateway.chat("Tell me a story", stream=True)
    assert response.status_code == 200 and "[DONE]" in response.text
    metrics = recorder(gateway)
    assert metrics.value("raygate_requests", route=CHAT, status="200") == 1
    (ttft,) = metrics.observed("raygate_ttft_ms", model="sim-small", target="sim/sim-small")
    (latency,) = metrics.observed("raygate_request_latency_ms", route=CHAT)
    assert 0 < ttft <= latency


@pytest.mark.asyncio
async def test_labels_stay_bounded_whatever_the_caller_sends(gateway: InProcessGateway) -> None:
    unknown = await gateway.chat("hi", model="model-of-the-day-8123")
    missing = await gateway.post("/v1/no/such/route", {})
    assert (unknown.status_code, missing.status_code) == (404, 404)
    metrics = recorder(gateway)
    assert metrics.value("raygate_requests", route=CHAT, model="none", status="404") == 1
    assert metrics.value("raygate_requests", route="other", model="none", status="404") == 1
    labels = {value for key in metrics.values for _, value in key[1]}
    assert "model-of-the-day-8123" not in labels and "/v1/no/such/route" not in labels


@pytest.mark.asyncio
async def test_refusals_failovers_and_policy_decisions_are_counted(
    gateway: InProcessGateway,
) -> None:
    anonymous = await gateway.chat("hi", headers={"authorization": "Bearer sk-wrong"})
    blocked = await gateway.chat("write to ana@example.org")
    await gateway.sim.fault(kind="status", status=503, match_model="sim-primary", count=1)
    failed_over = await gateway.chat("hi", model="sim-pair")
    assert (anonymous.status_code, blocked.status_code, failed_over.status_code) == (401, 403, 200)
    metrics = recorder(gateway)
    assert metrics.value("raygate_refusals", reason="auth", group="none") == 1
    assert metrics.value("raygate_refusals", reason="policy", group="default") == 1
    assert metrics.value("raygate_policy_decisions", action="block") == 1
    assert metrics.value("raygate_upstream_failures", target="sim/sim-primary", status="503") == 1
    assert metrics.value("raygate_requests", model="sim-pair", target="sim/sim-secondary") == 1


@pytest.mark.asyncio
async def test_the_audit_writer_reports_its_queue_and_write_lag(gateway: InProcessGateway) -> None:
    for _ in range(3):
        assert (await gateway.chat("hi")).status_code == 200
    audit = gateway.pipeline.responder.audit
    assert audit is not None
    await audit.flush()
    metrics = recorder(gateway)
    assert len(metrics.observed("raygate_audit_write_lag_ms")) >= 3
    assert metrics.value("raygate_audit_queue_depth") == 0


@pytest.mark.asyncio
async def test_a_cache_hit_is_answered_by_the_cache_and_processes_no_tokens(
    tmp_path: Path, embedder: Embedder
) -> None:
    config = CONFIG.format(db=tmp_path / "gw.db").replace("cache: {enabled: false}", "")
    async with in_process_gateway(config, embedder=embedder, headers=KEY) as gateway:
        first, second = [await gateway.chat("What is a bond?") for _ in range(2)]
        assert second.headers["x-raygate-cache"] == "exact", second.headers
        metrics = recorder(gateway)
        assert metrics.value("raygate_requests", target="cache", status="200") == 1
        assert metrics.value("raygate_cache_requests", phase="exact") == 1
        assert metrics.value("raygate_cache_requests", phase="miss") == 1
        assert (
            metrics.value("raygate_tokens", direction="in")
            == (first.json()["usage"]["prompt_tokens"])
        )


def test_an_alias_switched_on_by_a_key_set_at_run_time_keeps_its_label() -> None:
    yaml = CONFIG.format(db=":memory:").replace(
        "providers:\n", 'providers:\n  openai: {preset: openai, api_key: ""}\n'
    )
    config = parse_config(yaml + "  gpt-4o-mini: {targets: [openai/gpt-4o-mini]}\n")
    assert "gpt-4o-mini" not in config.enabled_models()  # no key yet
    metrics = Recorder()
    exchange = Exchange(request_id="req_1", path=CHAT, client_address=None)
    exchange.model, exchange.status = "gpt-4o-mini", 200
    exchange.route = Route(target="openai/gpt-4o-mini")
    RequestMetrics(config, metrics).record(exchange, 12.0)
    assert metrics.value("raygate_requests", model="gpt-4o-mini", target="openai/gpt-4o-mini") == 1
