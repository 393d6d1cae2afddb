"""Upstream failures through the running gateway (its colocated router and real TCP
connections): OpenAI's error shape, the right status, streams that break. The
gateway's own refusals (bad bodies, limits, keys, routes) are tested in process, in
tests/unit/api/test_errors.py."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Gateway


@pytest.fixture
def http(gateway: Gateway) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.v1, headers={"authorization": f"Bearer {gateway.api_key}"}, timeout=30
    )


@pytest.fixture
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=gateway.api_key, max_retries=0)


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    assert response.headers["x-raygate-request-id"].startswith("req_")
    return dict(body["error"])


CHAT = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}


def test_unsupported_parameter_for_the_provider_is_a_400_before_any_upstream_call(
    http: httpx.Client, gateway: Gateway
) -> None:
    error = _error(
        http.post("/chat/completions", json={**CHAT, "model": "sim-claude", "n": 2}), 400
    )
    assert error["code"] == "unsupported_parameter" and error["param"] == "n"
    assert gateway.upstream_requests() == []


def test_admin_routes_take_the_admin_key_only(gateway: Gateway) -> None:
    url = f"{gateway.base_url}/admin/providers"
    dev = httpx.get(url, headers={"authorization": f"Bearer {gateway.api_key}"})
    assert _error(dev, 401)["code"] == "invalid_admin_key"
    admin = httpx.get(url, headers={"authorization": f"Bearer {gateway.admin_key}"})
    providers = {p["name"]: p for p in admin.json()["providers"]}
    assert providers["simulator"]["enabled"] is True
    assert providers["openai"]["disabled_reason"] == "OPENAI_API_KEY is not set"


@pytest.mark.parametrize(
    ("upstream_status", "client_status"), [(500, 502), (502, 502), (503, 503), (401, 502)]
)
def test_upstream_failure_maps_to_a_gateway_error(
    http: httpx.Client, gateway: Gateway, upstream_status: int, client_status: int
) -> None:
    gateway.inject(kind="status", status=upstream_status, count=1)
    error = _error(http.post("/chat/completions", json=CHAT), client_status)
    assert error["type"] == "api_error"
    assert "simulator" in error["message"]


def test_upstream_429_passes_retry_after_through(http: httpx.Client, gateway: Gateway) -> None:
    gateway.inject(kind="status", status=429, retry_after=7, count=1)
    response = http.post("/chat/completions", json=CHAT)
    assert _error(response, 429)["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after"] == "7"


def test_unreachable_upstream_is_a_502(http: httpx.Client) -> None:
    error = _error(http.post("/chat/completions", json={**CHAT, "model": "sim-gone"}), 502)
    assert error["code"] == "upstream_error"
    assert "cannot connect" in error["message"]


def test_hanging_upstream_is_a_504_after_the_first_token_timeout(
    http: httpx.Client, gateway: Gateway
) -> None:
    gateway.inject(kind="hang", count=1)
    started = time.monotonic()
    body = {**CHAT, "model": "sim-impatient", "stream": True}
    error = _error(http.post("/chat/completions", json=body), 504)
    assert error["code"] == "upstream_timeout"
    assert time.monotonic() - started < 10


def _sse(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


@pytest.mark.parametrize("fault", ["cut", "malformed"])
def test_stream_broken_midway_ends_with_an_error_event_not_done(
    http: httpx.Client, gateway: Gateway, fault: str
) -> None:
    gateway.inject(kind=fault, after_chunks=3, count=1)
    with http.stream("POST", "/chat/completions", json={**CHAT, "stream": True}) as response:
        assert response.status_code == 200
        events = _sse(response)
    assert events[-1] != "[DONE]"
    last = json.loads(events[-1])
    assert last["error"]["type"] == "api_error"
    assert len(events) >= 4  # the chunks sent before the break reached the client


def test_stream_broken_midway_raises_in_the_openai_sdk(
    client: openai.OpenAI, gateway: Gateway
) -> None:
    gateway.inject(kind="cut", after_chunks=2, count=1)
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert len(received) >= 2


def test_client_disconnect_mid_stream_closes_the_upstream_stream(gateway: Gateway) -> None:
    before = int(gateway.simulator_stats()["streams_aborted_by_client"])  # type: ignore[call-overload]
    body = {**CHAT, "stream": True}
    gateway.inject(kind="hang", after_chunks=2, count=1)  # two chunks, then silence
    headers = {"authorization": f"Bearer {gateway.api_key}"}
    with httpx.stream("POST", f"{gateway.v1}/chat/completions", json=body, headers=headers) as r:
        lines = r.iter_lines()
        assert next(lines).startswith("data: ")
    # The gateway notices, cancels the router call, and the simulator sees its client go.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if int(gateway.simulator_stats()["streams_aborted_by_client"]) > before:  # type: ignore[call-overload]
            return
        time.sleep(0.1)
    pytest.fail("the upstream stream was not closed after the client went away")
