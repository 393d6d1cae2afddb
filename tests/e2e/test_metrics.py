"""A real Prometheus scrapes the running gateway (Ray's metrics agent serves every replica's
series); after known traffic, PromQL returns the expected counts.

The traffic is sent with keys of the `observed` access group, which no other test uses, so
the counts labelled with that group are exact."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import openai
import pytest

from tests.e2e.conftest import Gateway
from tests.servers.prometheus import PrometheusServer

CHAT = {"messages": [{"role": "user", "content": "Summarise the quarter"}], "max_tokens": 30}
ROUTE = "/v1/chat/completions"
OBSERVED = f'group="observed",route="{ROUTE}"'


@dataclass
class Traffic:
    """What was sent as the `observed` group, and what the answers said."""

    user: str
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0

    def ask(self, client: openai.OpenAI, model: str) -> None:
        raw = client.chat.completions.with_raw_response.create(model=model, **CHAT)
        usage = raw.parse().usage
        assert usage is not None
        self.cost_usd += float(raw.headers.get("x-raygate-cost-usd", 0))  # unpriced: none
        if raw.headers["x-raygate-cache"] in ("off", "miss"):  # a hit is not counted as usage
            self.tokens_in += usage.prompt_tokens
            self.tokens_out += usage.completion_tokens


def _client(gateway: Gateway, user: str, *groups: str) -> openai.OpenAI:
    args = [arg for group in ("observed", *groups) for arg in ("--group", group)]
    issued = gateway.cli("keys", "issue", "--user", user, *args)
    assert issued.returncode == 0, issued.stderr
    found = re.search(r"secret: (rg-\S+)", issued.stdout)
    assert found
    return openai.OpenAI(base_url=gateway.v1, api_key=found.group(1), max_retries=0)


@pytest.fixture(scope="module")
def traffic(gateway: Gateway) -> Traffic:
    sent = Traffic(user=f"observed-{uuid.uuid4().hex[:8]}")
    client = _client(gateway, sent.user)
    for _ in range(3):
        sent.ask(client, "sim-small")
    stream = client.chat.completions.create(
        model="sim-small", stream=True, stream_options={"include_usage": True}, **CHAT
    )
    for chunk in stream:
        if chunk.usage is not None:
            sent.tokens_in += chunk.usage.prompt_tokens
            sent.tokens_out += chunk.usage.completion_tokens
            # A stream's cost is settled after its headers: sim-small's list prices.
            usage = chunk.usage
            sent.cost_usd += (usage.prompt_tokens * 0.5 + usage.completion_tokens * 1.5) / 1e6
    for _ in range(2):  # the second is an exact cache hit
        sent.ask(client, "cached-small")
    sent.ask(client, "sim-fallback")  # its first target is down: one failed attempt
    limited = _client(gateway, f"{sent.user}-limited", "throttled")  # 2 requests a minute
    for _ in range(2):
        sent.ask(limited, "sim-small")
    with pytest.raises(openai.RateLimitError):
        limited.chat.completions.create(model="sim-small", **CHAT)
    return sent


def _exactly(prometheus: PrometheusServer, expr: str, expected: float) -> None:
    """Wait until `sum(expr)` reaches `expected` (exports and scrapes take their time),
    then check that it is exactly that."""
    prometheus.wait_for(f"sum({expr}) >= {expected}")
    assert prometheus.value(f"sum({expr})") == pytest.approx(expected, rel=1e-6), expr


def test_requests_are_counted_by_route_model_status_and_group(
    prometheus: PrometheusServer, traffic: Traffic
) -> None:
    requests = "ray_raygate_requests_total"
    _exactly(prometheus, f'{requests}{{{OBSERVED},model="sim-small",status="200"}}', 3 + 1 + 2)
    _exactly(prometheus, f'{requests}{{{OBSERVED},model="sim-small",status="429"}}', 1)
    _exactly(prometheus, f'{requests}{{{OBSERVED},model="cached-small",status="200"}}', 2)
    _exactly(prometheus, f'{requests}{{{OBSERVED},target="simulator/sim-backup"}}', 1)
    _exactly(prometheus, 'ray_raygate_refusals_total{group="observed",reason="rate_limit"}', 1)


def test_tokens_and_cost_add_up_to_the_answers(
    prometheus: PrometheusServer, traffic: Traffic
) -> None:
    tokens = 'ray_raygate_tokens_total{group="observed",direction="%s"}'
    _exactly(prometheus, tokens % "in", traffic.tokens_in)
    _exactly(prometheus, tokens % "out", traffic.tokens_out)
    _exactly(prometheus, 'ray_raygate_cost_usd_total{group="observed"}', traffic.cost_usd)
    avoided = 'ray_raygate_cost_avoided_usd_total{group="observed",model="cached-small"}'
    prometheus.wait_for(f"sum({avoided}) > 0")


def test_latency_overhead_and_time_to_first_token_are_histograms(
    prometheus: PrometheusServer, traffic: Traffic
) -> None:
    prometheus.wait_for('sum(ray_raygate_ttft_ms_count{model="sim-small"}) >= 1')
    p50 = (
        "histogram_quantile(0.5, sum by (le) "
        f'(ray_raygate_request_latency_ms_bucket{{route="{ROUTE}",model="sim-small"}}))'
    )
    assert prometheus.value(p50) > 0
    overhead = f'ray_raygate_overhead_ms_bucket{{route="{ROUTE}",le="+Inf"}}'
    prometheus.wait_for(f"sum({overhead}) >= 9")


def test_every_deployment_reports_from_its_replicas(
    prometheus: PrometheusServer, traffic: Traffic
) -> None:
    # The router runs in the ingress replicas here (`serve.colocate_router`, the default).
    assert {
        s["metric"].get("deployment") for s in prometheus.wait_for("ray_raygate_breaker_state")
    } == {"Ingress"}
    by_deployment = {
        "Ingress": "ray_raygate_audit_write_lag_ms_count",
        "Cache": 'ray_raygate_cache_lookups_total{phase="exact"}',
    }
    for deployment, series in by_deployment.items():
        found = prometheus.wait_for(f"{series}")
        assert {s["metric"].get("deployment") for s in found} == {deployment}
        assert all(s["metric"].get("replica") for s in found)
    failures = 'ray_raygate_upstream_failures_total{target="nowhere/sim-gone"}'
    prometheus.wait_for(f"sum({failures}) >= 1")


def test_no_label_carries_a_user_or_their_text(
    prometheus: PrometheusServer, traffic: Traffic
) -> None:
    series = prometheus.wait_for('{__name__=~"ray_raygate_.+"}')
    values = {value for s in series for value in s["metric"].values()}
    assert not [v for v in values if traffic.user in v or "quarter" in v]
