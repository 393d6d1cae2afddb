"""The local models' Grafana dashboard returns data from a real Prometheus scraping a gateway
whose model runs on a vLLM replica in its Serve app, once chats and streams went through it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import openai

from gateway.observability.dashboards import panel_queries
from tests.e2e.local.conftest import LocalGateway
from tests.servers.prometheus import PrometheusServer

DASHBOARD = (
    Path(__file__).resolve().parents[3] / "cluster/grafana/dashboards/raygate-local-models.json"
)
DEADLINE_S = 120.0


def test_every_panel_of_the_local_models_dashboard_returns_data(
    local_gateway: LocalGateway, local_prometheus: PrometheusServer
) -> None:
    exprs = [expr for _, expr in panel_queries(json.loads(DASHBOARD.read_text()), "5m")]
    assert len(exprs) >= 6
    client = openai.OpenAI(base_url=local_gateway.v1, api_key=local_gateway.api_key)
    chat = {"messages": [{"role": "user", "content": "Count to five"}], "max_tokens": 8}
    deadline = time.monotonic() + DEADLINE_S
    while True:
        # Rates and quantiles need increments after a series first appears: keep sending.
        client.chat.completions.create(model="tiny", **chat)
        for _ in client.chat.completions.create(
            model="tiny", stream=True, stream_options={"include_usage": True}, **chat
        ):
            pass
        missing = local_prometheus.without_data(exprs, settle_s=5)
        if not missing or time.monotonic() > deadline:
            break
    assert not missing, "panels without data:\n" + "\n".join(missing)
