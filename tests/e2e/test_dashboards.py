"""Every panel of the shipped Grafana dashboards returns data from a real Prometheus scraping
the running gateway, once traffic of every kind has gone through it: chats and a stream,
cache misses, hits and a verification refusal, a redaction and a block, refusals of every
reason, an upstream error, failovers, and a breaker tripped by passive ejection.

The queries are read from `cluster/grafana/dashboards/*.json` (what ships; a unit test keeps
it equal to the builder), with Grafana's windows as `5m`. The local models' dashboard is
checked with a local model running, in tests/e2e/local/.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway.observability.dashboards import panel_queries
from tests.e2e.conftest import Gateway
from tests.servers.prometheus import PrometheusServer

SHIPPED = Path(__file__).resolve().parents[2] / "cluster" / "grafana" / "dashboards"
ELSEWHERE = {"raygate-local-models"}  # tests/e2e/local/
NO_DATA_HERE = {
    ("raygate-cache", "Explorations"): "gateway.yaml sets cache.exploration_rate to 0",
    ("raygate-policy", "Audit batches refused"): "the test database refuses no audit batch",
}
"""Panels of events this gateway never produces, and why; every other panel must show data."""

CARD = "4111 1111 1111 1111"
SECRET = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7s"
WAVES_DEADLINE_S = 150.0
SETTLE_S = 15.0


def _dashboards() -> list[dict[str, object]]:
    paths = sorted(SHIPPED.glob("*.json"))
    return [json.loads(p.read_text()) for p in paths if p.stem not in ELSEWHERE]


def _queries() -> list[tuple[str, str, str]]:
    return [
        (str(d["uid"]), title, expr)
        for d in _dashboards()
        for title, expr in panel_queries(d, "5m")
        if (d["uid"], title) not in NO_DATA_HERE
    ]


class Caller:
    """Callers of every kind, each a fresh user with an issued key (the admin API)."""

    def __init__(self, gateway: Gateway, admin: httpx.Client) -> None:
        self.gateway = gateway
        self.admin = admin

    def new(self, *groups: str) -> openai.OpenAI:
        issued = self.admin.post(
            "/admin/keys", json={"user": f"dash-{uuid.uuid4().hex[:8]}", "groups": list(groups)}
        )
        assert issued.status_code == 201, issued.text
        key = issued.json()["secret"]
        return openai.OpenAI(base_url=self.gateway.v1, api_key=key, max_retries=0)


@pytest.fixture
def caller(gateway: Gateway) -> Iterator[Caller]:
    headers = {"authorization": f"Bearer {gateway.admin_key}"}
    with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as admin:
        yield Caller(gateway, admin)


def _say(client: openai.OpenAI, model: str, text: str = "Summarise the quarter") -> None:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], max_tokens=30
    )


def _wave(gateway: Gateway, caller: Caller, *, trip_breaker: bool) -> None:
    """One round of every kind of traffic the checked panels show."""
    plain = caller.new()
    for _ in range(2):
        _say(plain, "sim-small")
    stream = plain.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "Count to five"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert list(stream)
    # The cache (cached-small, per user): a miss then an exact hit; a number changed after a
    # miss is a semantic candidate that verification refuses.
    for text in ("How do I rotate an AWS access key?",) * 2 + (
        "What is 15% of 80 dollars?",
        "What is 15% of 90 dollars?",
    ):
        _say(plain, "cached-small", text)
    # The policy: the default profile redacts a secret; the strict one blocks a card number.
    _say(plain, "sim-small", f"My key is {SECRET}")
    contractor = caller.new("contractors")
    with pytest.raises(openai.PermissionDeniedError):
        _say(contractor, "sim-small", f"Charge {CARD} for the order")
    with pytest.raises(openai.PermissionDeniedError):  # a model the group may not use
        _say(contractor, "sim-claude")
    # Refusals: over a rate limit (2 a minute), over a budget, without a valid key.
    throttled = caller.new("throttled")
    with pytest.raises(openai.RateLimitError):
        for _ in range(3):
            _say(throttled, "sim-small")
    frugal = caller.new("frugal")
    with pytest.raises(openai.RateLimitError):
        for _ in range(30):
            _say(frugal, "sim-small")
    stranger = openai.OpenAI(base_url=gateway.v1, api_key="sk-not-a-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        _say(stranger, "sim-small")
    # Upstreams: an error passed on as a 502; failed over, until a breaker opens.
    gateway.inject(kind="status", status=500, count=1, match_model="sim-small")
    with pytest.raises(openai.InternalServerError):
        _say(plain, "sim-small")
    if trip_breaker:
        # Five failures in a row eject sim-primary (its breaker opens for 10 s) while
        # sim-secondary answers; the next request after that probes and closes it.
        gateway.inject(kind="status", status=503, count=5, match_model="sim-primary")
        for _ in range(5):
            _say(plain, "sim-pair")


def _without_data(prometheus: PrometheusServer, queries: list[tuple[str, str, str]]) -> list[str]:
    missing = set(prometheus.without_data([expr for _, _, expr in queries], settle_s=SETTLE_S))
    return [f"{uid} / {title}: {expr}" for uid, title, expr in queries if expr in missing]


def test_the_exempt_panels_exist() -> None:
    panels = {(str(d["uid"]), title) for d in _dashboards() for title, _ in panel_queries(d)}
    assert set(NO_DATA_HERE) <= panels


def test_every_panel_of_every_dashboard_returns_data(
    gateway: Gateway, prometheus: PrometheusServer, caller: Caller
) -> None:
    queries = _queries()
    assert len(queries) > 40
    # Rates and quantiles need increments after a series first appears in Prometheus: the
    # first wave makes the series, a later one moves them.
    deadline = time.monotonic() + WAVES_DEADLINE_S
    first = True
    while True:
        _wave(gateway, caller, trip_breaker=first)
        first = False
        missing = _without_data(prometheus, queries)
        if not missing or time.monotonic() > deadline:
            break
    assert not missing, "panels without data:\n" + "\n".join(missing)
