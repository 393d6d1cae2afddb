"""Bad input and upstream failures through the whole request path, in process: OpenAI's error
shape (Anthropic's on /v1/messages) with the right status, nothing sent upstream when the
gateway refuses, a stream that breaks after it started ending with an error event, and every
request leaving one audit record."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.accounting.meter import Meter
from gateway.cache.embedder import Embedder
from tests.support.gateway import InProcessGateway, in_process_gateway

CONFIG = """
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{db}"}}
limits: {{max_body_bytes: 4096}}
cache: {{enabled: false}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
  sim-anthropic: {{kind: anthropic, base_url: "http://sim", api_key: simulated}}
  openai: {{preset: openai, api_key: ""}}
models:
  sim-small: {{targets: [sim/sim-small]}}
  sim-claude: {{targets: [sim-anthropic/claude-sim]}}
  sim-pair: {{targets: [sim/sim-primary, sim/sim-secondary]}}
  gpt-4o-mini: {{targets: [openai/gpt-4o-mini]}}
"""
CHAT = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
KEY = {"authorization": "Bearer sk-dev"}


@pytest_asyncio.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[InProcessGateway]:
    async with in_process_gateway(CONFIG.format(db=tmp_path / "gw.db"), headers=KEY) as gw:
        yield gw


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """The OpenAI-shaped error of `response`, which must have `status`."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "Traceback" not in response.text
    assert response.headers["x-raygate-request-id"].startswith("req_")
    return dict(body["error"])


def sse(text: str) -> list[str]:
    return [line[6:] for line in text.splitlines() if line.startswith("data: ")]


@pytest.mark.asyncio
async def test_malformed_json_is_a_400(gateway: InProcessGateway) -> None:
    response = await gateway.post("/v1/chat/completions", content=b'{"model": "sim-small",')
    error = error_of(response, 400)
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "temperature": "hot"}, "temperature"),
        ({**CHAT, "temperature": 3}, "temperature"),
        ({"model": "sim-small"}, "messages"),
        (
            {"model": "sim-small", "messages": [{"role": "wizard", "content": "hi"}]},
            "messages.0.role",
        ),
    ],
)
async def test_an_invalid_body_is_a_400_naming_the_parameter(
    gateway: InProcessGateway, body: dict[str, Any], param: str
) -> None:
    assert error_of(await gateway.post("/v1/chat/completions", body), 400)["param"] == param
    assert await gateway.sim.requests() == []


@pytest.mark.asyncio
async def test_unknown_model_is_a_404_model_not_found(gateway: InProcessGateway) -> None:
    response = await gateway.post("/v1/chat/completions", {**CHAT, "model": "gpt-9"})
    assert error_of(response, 404)["code"] == "model_not_found"
    assert await gateway.sim.requests() == []


@pytest.mark.asyncio
async def test_a_body_over_the_limit_is_a_413_declared_or_streamed(
    gateway: InProcessGateway,
) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 10_000}]}
    declared = await gateway.post("/v1/chat/completions", big)
    assert error_of(declared, 413)["code"] == "request_too_large"

    async def chunked() -> AsyncIterator[bytes]:  # no content-length: counted as it arrives
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    streamed = await gateway.post("/v1/chat/completions", content=chunked())
    assert error_of(streamed, 413)["code"] == "request_too_large"
    assert await gateway.sim.requests() == []


@pytest.mark.asyncio
async def test_missing_and_wrong_keys_are_401(gateway: InProcessGateway) -> None:
    missing = await gateway.http.post("/v1/chat/completions", json=CHAT)
    assert error_of(missing, 401)["code"] == "missing_api_key"
    wrong = await gateway.post("/v1/chat/completions", CHAT, headers={"authorization": "Bearer x"})
    assert error_of(wrong, 401)["code"] == "invalid_api_key"


@pytest.mark.asyncio
async def test_unknown_route_and_wrong_method_keep_the_error_shape(
    gateway: InProcessGateway,
) -> None:
    assert error_of(await gateway.http.get("/v1/no/such/route"), 404)["code"] == "not_found"
    wrong_method = await gateway.http.get("/v1/chat/completions")
    assert error_of(wrong_method, 405)["code"] == "method_not_allowed"


@pytest.mark.asyncio
async def test_an_unsupported_parameter_is_a_400_before_any_upstream_call(
    gateway: InProcessGateway,
) -> None:
    response = await gateway.post("/v1/chat/completions", {**CHAT, "model": "sim-claude", "n": 2})
    error = error_of(response, 400)
    assert (error["code"], error["param"]) == ("unsupported_parameter", "n")
    assert await gateway.sim.requests() == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("upstream_status", "client_status"), [(500, 502), (502, 502), (503, 503), (401, 502)]
)
async def test_an_upstream_failure_maps_to_a_gateway_error(
    gateway: InProcessGateway, upstream_status: int, client_status: int
) -> None:
    await gateway.sim.fault(kind="status", status=upstream_status, count=1)
    error = error_of(await gateway.post("/v1/chat/completions", CHAT), client_status)
    assert error["type"] == "api_error" and "sim" in error["message"]


@pytest.mark.asyncio
async def test_an_upstream_429_passes_retry_after_through(gateway: InProcessGateway) -> None:
    await gateway.sim.fault(kind="status", status=429, retry_after=7, count=1)
    response = await gateway.post("/v1/chat/completions", CHAT)
    assert error_of(response, 429)["code"] == "rate_limit_exceeded"
    assert response.headers["retry-after"] == "7"


@pytest.mark.asyncio
async def test_a_stream_broken_midway_ends_with_an_error_event_not_done(
    gateway: InProcessGateway,
) -> None:
    await gateway.sim.fault(kind="malformed", after_chunks=3, count=1)
    response = await gateway.post("/v1/chat/completions", {**CHAT, "stream": True})
    assert response.status_code == 200
    events = sse(response.text)
    assert events[-1] != "[DONE]"
    assert json.loads(events[-1])["error"]["type"] == "api_error"
    assert len(events) >= 4  # the chunks sent before the break reached the client


@pytest.mark.asyncio
async def test_an_anthropic_stream_broken_midway_ends_with_an_error_event(
    gateway: InProcessGateway,
) -> None:
    await gateway.sim.fault(kind="malformed", after_chunks=3, count=1)
    body = {"model": "sim-small", "max_tokens": 50, "stream": True, "messages": CHAT["messages"]}
    response = await gateway.post("/v1/messages", body)
    assert response.status_code == 200
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names[0] == "message_start" and names[-1] == "error"
    assert "message_stop" not in names


@pytest.mark.asyncio
async def test_an_anthropic_route_error_is_in_anthropics_shape(gateway: InProcessGateway) -> None:
    body = {"model": "gpt-9", "max_tokens": 5, "messages": CHAT["messages"]}
    response = await gateway.post("/v1/messages", body)
    assert response.status_code == 404
    assert response.json() == {
        "type": "error",
        "error": {"type": "not_found_error", "message": response.json()["error"]["message"]},
    }


@pytest.mark.asyncio
async def test_a_stream_that_cannot_start_falls_over_or_is_an_ordinary_error(
    gateway: InProcessGateway,
) -> None:
    await gateway.sim.fault(kind="status", status=503, match_model="sim-primary", count=1)
    fell_over = await gateway.post(
        "/v1/chat/completions", {**CHAT, "model": "sim-pair", "stream": True}
    )
    assert fell_over.status_code == 200 and sse(fell_over.text)[-1] == "[DONE]"
    assert fell_over.headers["x-raygate-route"] == "sim/sim-secondary; tried=sim/sim-primary:503"
    await gateway.sim.fault(kind="status", status=503, count=1)
    refused = await gateway.post("/v1/chat/completions", {**CHAT, "stream": True})
    assert error_of(refused, 503)["code"] == "upstream_unavailable"


@pytest.mark.asyncio
async def test_every_request_leaves_one_audit_record_with_its_status(
    gateway: InProcessGateway,
) -> None:
    await gateway.post("/v1/chat/completions", CHAT)
    await gateway.post("/v1/chat/completions", {**CHAT, "model": "gpt-9"})
    await gateway.sim.fault(kind="malformed", after_chunks=2, count=1)
    await gateway.post("/v1/chat/completions", {**CHAT, "stream": True})
    records = await gateway.records()
    outcomes = sorted((r["status"], r["error_code"] or "") for r in records)
    assert outcomes == [(200, ""), (200, "upstream_error"), (404, "model_not_found")]


REDACTING = """
auth: {{dev_key: sk-dev}}
storage: {{url: "sqlite:///{db}"}}
audit: {{prompt: full, response: full}}
cache: {{enabled: false}}
policy:
  profiles:
    default: {{pii: {{"*": redact}}}}
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
  sim-embed: {{targets: [sim/sim-embed]}}
"""


def _content(raw: bytes) -> bytes:
    return b'{"model": "sim-small", "messages": [{"role": "user", "content": "' + raw + b'"}]}'


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (_content(b"a\\ud800b"), "hex"),
        (_content(b"a\xed\xa0\x80b"), "unicode"),
        (b'{"model": "sim-small", "tool_choice": ' + b"[" * 1200 + b"]" * 1200 + b"}", "recursion"),
        (_content(b"\xff\xfe"), "unicode"),
    ],
    ids=["lone-surrogate-escape", "surrogate-bytes", "nested-1200-deep", "not-utf8"],
)
async def test_json_the_gateway_cannot_take_is_a_400_not_a_500(
    gateway: InProcessGateway, raw: bytes, why: str
) -> None:
    error = error_of(await gateway.post("/v1/chat/completions", content=raw), 400)
    assert "JSON" in error["message"] and why in error["message"]
    assert await gateway.sim.requests() == []


@pytest.mark.asyncio
async def test_an_absurd_embedding_dimension_is_a_400_naming_it(gateway: InProcessGateway) -> None:
    body = {"model": "sim-small", "input": "hello", "dimensions": 2**63}
    error = error_of(await gateway.post("/v1/embeddings", body), 400)
    assert error["param"] == "dimensions"
    assert await gateway.sim.requests() == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "text", ["a\x00b ana@example.org", "echo ana@example.org\x00", "[EMAIL_1]\x00 ana@example.org"]
)
async def test_a_nul_beside_a_redacted_value_is_redacted_not_a_500(
    tmp_path: Path, text: str
) -> None:
    config = REDACTING.format(db=tmp_path / "gw.db")
    async with in_process_gateway(config, headers=KEY) as gw:
        chat = {"model": "sim-small", "messages": [{"role": "user", "content": text}]}
        response = await gw.post("/v1/chat/completions", chat)
        assert response.status_code == 200, response.text
        (sent,) = await gw.sim.bodies()
        assert "ana@example.org" not in sent["messages"][0]["content"]
        assert sent["messages"][0]["content"].count("\x00") == 1


@pytest.mark.asyncio
async def test_an_unexpected_failure_is_a_500_in_the_error_shape_and_audited(
    gateway: InProcessGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any) -> Any:
        raise RuntimeError("a bug in a stage")

    monkeypatch.setattr(gateway.pipeline.upstream, "chat", broken)
    response = await gateway.post("/v1/chat/completions", CHAT)
    error = error_of(response, 500)
    assert response.headers["x-raygate-request-id"] in error["message"]
    assert "a bug in a stage" not in response.text
    (record,) = await gateway.records()
    assert (
        record["status"] == 500 and record["request_id"] == response.headers["x-raygate-request-id"]
    )


@pytest.mark.asyncio
async def test_a_request_whose_accounting_fails_is_answered_and_audited(
    gateway: InProcessGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise ConnectionError("the budget database is gone")

    monkeypatch.setattr(Meter, "settle", broken)
    whole = await gateway.post("/v1/chat/completions", CHAT)
    streamed = await gateway.post("/v1/chat/completions", {**CHAT, "stream": True})
    assert whole.status_code == streamed.status_code == 200
    assert sse(streamed.text)[-1] == "[DONE]"
    records = await gateway.records()
    assert [(r["status"], r["error_code"]) for r in records] == [(200, "accounting_failed")] * 2


@pytest.mark.asyncio
async def test_a_routing_failure_says_which_targets_were_tried(gateway: InProcessGateway) -> None:
    await gateway.sim.fault(kind="status", status=503, count=2)
    response = await gateway.post("/v1/chat/completions", {**CHAT, "model": "sim-pair"})
    error_of(response, 503)
    assert response.headers["x-raygate-route"] == (
        "tried=sim/sim-primary:503,sim/sim-secondary:503"
    )
    assert float(response.headers["x-raygate-overhead-ms"]) >= 0
    (record,) = await gateway.records()
    assert record["status"] == 503
    assert record["route_taken"] == response.headers["x-raygate-route"]


@pytest.mark.asyncio
async def test_a_path_parameter_out_of_range_is_a_400_in_the_error_shape(
    tmp_path: Path, embedder: Embedder
) -> None:
    config = CONFIG.format(db=tmp_path / "gw.db").replace("cache: {enabled: false}\n", "")
    async with in_process_gateway(config, embedder=embedder) as gw:
        admin = {"authorization": "Bearer sk-raygate-admin"}
        response = await gw.http.delete(f"/admin/cache/entries/{2**70}", headers=admin)
        assert error_of(response, 400)["param"] == "entry_id"


@pytest.mark.asyncio
async def test_readiness_names_what_cannot_answer_yet(
    gateway: InProcessGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await gateway.http.get("/readyz")).json() == {"status": "ready"}

    async def starting() -> list[str]:
        return ["local model 'tiny': no running replica yet"]

    monkeypatch.setattr(gateway.router, "not_ready", starting)
    response = await gateway.http.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "not ready",
        "waiting_for": ["local model 'tiny': no running replica yet"],
    }
