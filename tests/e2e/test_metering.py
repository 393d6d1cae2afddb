"""Rate limits, budgets and cost through the whole gateway, with the official `openai` SDK."""

from __future__ import annotations

import re
import uuid

import openai
import pytest

from tests.e2e.conftest import Gateway

CHAT = {"messages": [{"role": "user", "content": "Summarise the quarter"}], "max_tokens": 50}


def _client(gateway: Gateway, *groups: str) -> openai.OpenAI:
    args = [arg for group in groups for arg in ("--group", group)]
    issued = gateway.cli("keys", "issue", "--user", f"metered-{uuid.uuid4().hex[:8]}", *args)
    assert issued.returncode == 0, issued.stderr
    found = re.search(r"secret: (rg-\S+)", issued.stdout)
    assert found
    return openai.OpenAI(base_url=gateway.v1, api_key=found.group(1), max_retries=0)


def test_each_answer_carries_its_cost(gateway: Gateway) -> None:
    raw = _client(gateway).chat.completions.with_raw_response.create(model="sim-small", **CHAT)
    usage = raw.parse().usage
    assert usage is not None
    # sim-small's packaged price: $0.50 / $1.50 per million input / output tokens.
    expected = (usage.prompt_tokens * 0.5 + usage.completion_tokens * 1.5) / 1e6
    assert float(raw.headers["x-raygate-cost-usd"]) == pytest.approx(expected, rel=1e-6)


def test_a_user_over_their_request_rate_gets_429_with_retry_after(gateway: Gateway) -> None:
    client = _client(gateway, "throttled")
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(model="sim-small", **CHAT)
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="sim-small", **CHAT)
    response = caught.value.response
    assert float(response.headers["retry-after"]) > 0
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert caught.value.code == "rate_limit_exceeded"


def test_a_budget_refuses_the_call_that_would_overspend(gateway: Gateway) -> None:
    client = _client(gateway, "frugal")
    spent, answered = 0.0, 0
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(30):
            raw = client.chat.completions.with_raw_response.create(model="sim-small", **CHAT)
            spent += float(raw.headers["x-raygate-cost-usd"])
            answered += 1
    assert caught.value.code == "insufficient_quota"
    assert answered >= 1
    assert spent <= 0.0002  # the day's budget was never exceeded


def test_a_refused_call_never_reaches_the_upstream(gateway: Gateway) -> None:
    client = _client(gateway, "throttled")
    for _ in range(2):
        client.chat.completions.create(model="sim-small", **CHAT)
    before = len(gateway.upstream_requests())
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sim-small", **CHAT)
    assert len(gateway.upstream_requests()) == before
