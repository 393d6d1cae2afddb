"""The input policy through the HTTP API in-process: the router over the in-process
simulator, the real MiniLM as the API's `embed` (no Ray). What the simulator receives is what
the caller's profile allowed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.api.embedding import Embed
from tests.support.gateway import InProcessGateway, in_process_gateway
from tests.unit.policy.conftest import CountingEmbed

SECRET = "proxy-secret-0123456789"
CONFIG = """
auth:
  trusted_header:
    trusted_proxies: [127.0.0.1/32]
    shared_secret: {secret}
    groups_header: x-forwarded-groups
storage:
  url: sqlite:///{db}
cache:
  lookup_timeout_s: 60  # CPU MiniLM on a shared 2-core machine: never a spurious timeout
access:
  default: {{models: ["*"]}}
  groups:
    contractors: {{models: ["*"], policy: contractors}}
    staff: {{models: ["*"], policy: staff}}
    trial: {{models: ["*"], policy: trial}}
    careful: {{models: ["*"], policy: careful}}
policy:
  profiles:
    default:
      topics: {{medical_advice: monitor}}
    contractors:
      pii: {{"*": redact}}
      topics: {{compensation: block, hr: block, medical_advice: monitor}}
      models: [sim-small, sim-embed]
      max_tokens: 100
      max_tokens_action: reject
    staff:
      pii: {{"*": redact}}
      topics: {{medical_advice: monitor}}
      max_tokens: 100
    trial:
      pii: {{"*": block}}
      topics: {{compensation: block}}
      dry_run: true
    careful:
      topics: {{compensation: block}}
      embedding_unavailable: closed
providers:
  sim: {{preset: simulator, base_url: "http://sim/v1"}}
models:
  sim-small: {{targets: [sim/sim-small]}}
  sim-large: {{targets: [sim/sim-large]}}
  sim-embed: {{targets: [sim/sim-embed]}}
"""
PAY = "How much do the engineers on my team get paid per year?"


class Gateway:
    """An in-process gateway and a client per group."""

    def __init__(self, gw: InProcessGateway) -> None:
        self.gw = gw
        self.http = gw.http

    async def post(self, path: str, body: dict[str, Any], *groups: str) -> httpx.Response:
        headers = {
            "x-raygate-proxy-secret": SECRET,
            "x-forwarded-user": "ana",
            "x-forwarded-groups": ",".join(groups),
        }
        return await self.gw.post(path, body, headers=headers)

    async def chat(self, text: str, *groups: str, **extra: Any) -> httpx.Response:
        body = {"model": "sim-small", "messages": [{"role": "user", "content": text}], **extra}
        return await self.post("/v1/chat/completions", body, *groups)

    async def upstream(self) -> list[dict[str, Any]]:
        """The JSON bodies the simulator received, oldest first."""
        return await self.gw.sim.bodies()

    async def records(self) -> list[dict[str, Any]]:
        """Every audit record so far (the writer flushed first)."""
        return await self.gw.records()

    def set_embed(self, embed: Embed | None) -> None:
        """Replace the embedder the policy uses (none, or a failing one)."""
        self.gw.pipeline.input_policy.embedding.embed = embed


@pytest_asyncio.fixture
async def gateway(tmp_path: Path, embed: CountingEmbed) -> AsyncIterator[Gateway]:
    config = CONFIG.format(secret=SECRET, db=tmp_path / "gw.db")
    async with in_process_gateway(config, embed=embed) as gw:
        yield Gateway(gw)


@pytest.mark.asyncio
async def test_a_pay_question_is_blocked_for_contractors_but_not_for_staff(
    gateway: Gateway,
) -> None:
    refused = await gateway.chat(PAY, "contractors")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "policy_violation" and "topic.compensation" in error["message"]
    assert await gateway.upstream() == []
    answered = await gateway.chat(PAY, "staff")
    assert answered.status_code == 200
    assert len(await gateway.upstream()) == 1


@pytest.mark.asyncio
async def test_detected_topics_and_topic_decisions_are_in_the_audit_record(
    gateway: Gateway,
) -> None:
    await gateway.chat(PAY, "contractors")
    await gateway.chat("How much ibuprofen can I take for my back pain?", "staff")
    records = {r["principal"]["groups"][0]: r for r in await gateway.records()}
    blocked, flagged = records["contractors"], records["staff"]
    assert blocked["topics"] == ["compensation"] and blocked["status"] == 403
    decision = blocked["decisions"][-1]
    assert decision["rule"] == "topic.compensation" and decision["topic"] == "compensation"
    assert decision["score"] >= decision["threshold"] > 0
    assert flagged["topics"] == ["medical_advice"] and flagged["status"] == 200
    topical = [(d["rule"], d["action"]) for d in flagged["decisions"] if d["topic"]]
    assert topical == [("topic.medical_advice", "monitor")]


@pytest.mark.asyncio
async def test_the_request_embedding_is_computed_once_and_kept_for_the_cache(
    gateway: Gateway, embed: CountingEmbed
) -> None:
    await gateway.chat("Write a haiku about autumn leaves for ana@example.org", "staff")
    asked = [t for t in embed.asked if "haiku" in t]
    assert asked == ["Write a haiku about autumn leaves for [EMAIL_1]"]  # redacted, once


@pytest.mark.asyncio
async def test_without_an_embedder_topic_rules_are_recorded_as_not_run(gateway: Gateway) -> None:
    gateway.set_embed(None)
    assert (await gateway.chat(PAY, "contractors")).status_code == 200
    (record,) = await gateway.records()
    (decision,) = [d for d in record["decisions"] if d["rule"] == "embedding.unavailable"]
    assert decision["action"] == "not_run" and decision["detail"] == "no embedder configured"
    assert record["topics"] == []


@pytest.mark.asyncio
async def test_a_fail_closed_profile_is_refused_with_503_when_the_embedder_fails(
    gateway: Gateway,
) -> None:
    async def broken(texts: list[str]) -> Any:
        raise ConnectionError("embedder replica gone")

    gateway.set_embed(broken)
    response = await gateway.chat("What is the capital of Australia?", "careful")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "policy_unavailable"
    assert await gateway.upstream() == []
    assert (await gateway.chat("What is the capital of Australia?")).status_code == 200


@pytest.mark.asyncio
async def test_a_legacy_completion_prompt_is_redacted_before_the_upstream(
    gateway: Gateway,
) -> None:
    body = {"model": "sim-small", "prompt": ["mail ana@example.org", "and bo@example.org"]}
    response = await gateway.post("/v1/completions", body, "staff")
    assert response.status_code == 200, response.text
    (sent,) = await gateway.upstream()
    assert sent["prompt"] == ["mail [EMAIL_1]", "and [EMAIL_2]"]


@pytest.mark.asyncio
async def test_a_legacy_completion_on_a_blocked_topic_never_reaches_the_upstream(
    gateway: Gateway,
) -> None:
    body = {"model": "sim-small", "prompt": PAY}
    response = await gateway.post("/v1/completions", body, "contractors")
    assert response.status_code == 403 and await gateway.upstream() == []


@pytest.mark.asyncio
async def test_token_id_prompts_are_refused_where_the_profile_redacts(gateway: Gateway) -> None:
    body = {"model": "sim-small", "prompt": [101, 2023, 102]}
    response = await gateway.post("/v1/completions", body, "staff")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "policy_unreadable_input"


@pytest.mark.asyncio
async def test_embedding_inputs_are_redacted_before_the_upstream(gateway: Gateway) -> None:
    body = {"model": "sim-embed", "input": "Contact ana@example.org about the invoice"}
    response = await gateway.post("/v1/embeddings", body, "staff")
    assert response.status_code == 200, response.text
    (sent,) = await gateway.upstream()
    assert sent["input"] == "Contact [EMAIL_1] about the invoice"


@pytest.mark.asyncio
async def test_a_model_outside_the_profile_is_refused_with_the_rule_named(
    gateway: Gateway,
) -> None:
    response = await gateway.post(
        "/v1/chat/completions",
        {"model": "sim-large", "messages": [{"role": "user", "content": "hi"}]},
        "contractors",
    )
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("model_not_allowed", "model")
    assert "rule: models" in error["message"]


@pytest.mark.asyncio
async def test_max_tokens_over_the_ceiling_is_rejected_or_clamped_per_profile(
    gateway: Gateway,
) -> None:
    rejected = await gateway.chat("hi", "contractors", max_tokens=500)
    assert rejected.status_code == 400
    error = rejected.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "max_tokens_exceeded",
        "max_tokens",
    )
    assert "rule: max_tokens" in error["message"]
    clamped = await gateway.chat("hi", "staff", max_tokens=500)
    assert clamped.status_code == 200
    (sent,) = await gateway.upstream()
    assert sent["max_tokens"] == 100


@pytest.mark.asyncio
async def test_a_dry_run_profile_records_blocks_but_sends_the_request_unchanged(
    gateway: Gateway,
) -> None:
    text = f"{PAY} Reply to ana@example.org"
    response = await gateway.chat(text, "trial")
    assert response.status_code == 200
    (sent,) = await gateway.upstream()
    assert sent["messages"][0]["content"] == text
    (record,) = await gateway.records()
    assert {d["rule"] for d in record["decisions"]} >= {"pii.EMAIL", "topic.compensation"}
    assert {d["action"] for d in record["decisions"]} == {"block"}


@pytest.mark.asyncio
async def test_the_dry_run_route_reports_topics_and_embedding_checks(gateway: Gateway) -> None:
    response = await gateway.http.post(
        "/admin/policy/check",
        json={"text": PAY, "groups": ["contractors"]},
        headers={"authorization": "Bearer sk-raygate-admin"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["action"] == "block" and body["embedding_checks"] == "ran"
    assert body["topics"][0]["topic"] == "compensation"
