"""The semantic cache through the whole gateway (`raygate up`: ingress, router and the
embedder + FAISS cache deployment) with the official `openai` SDK. gateway.yaml turns the
cache on for `cached-small` only, isolated per user."""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import openai

from tests.e2e.conftest import Gateway

MODEL = "cached-small"


def _client(gateway: Gateway, user: str | None = None) -> openai.OpenAI:
    """A client for a fresh user (an issued key), so that tests do not share cache entries."""
    user = user or f"cache-{uuid.uuid4().hex[:8]}"
    issued = gateway.cli("keys", "issue", "--user", user)
    assert issued.returncode == 0, issued.stderr
    found = re.search(r"secret: (rg-\S+)", issued.stdout)
    assert found
    return openai.OpenAI(base_url=gateway.v1, api_key=found.group(1), max_retries=0)


def _ask(
    client: openai.OpenAI, text: str, *, control: str | None = None
) -> tuple[str, dict[str, str]]:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-raygate-cache-control": control} if control else None,
    )
    answer = raw.parse().choices[0].message.content or ""
    return answer, dict(raw.headers)


def _upstream_calls(gateway: Gateway) -> int:
    return sum(1 for r in gateway.upstream_requests() if str(r["path"]).endswith("completions"))


def _cached(client: openai.OpenAI, text: str) -> tuple[str, dict[str, str]]:
    """Ask once, a miss. Its answer is stored off the response path, but no later request
    can miss it: the ingress waits for its own inserts in the scope, identical requests in
    flight share one answer, and a cache replica catches up with the entry log on a miss."""
    answer, headers = _ask(client, text)
    assert headers["x-raygate-cache"] == "miss"
    return answer, headers


def test_a_repeat_and_a_paraphrase_are_answered_from_the_cache(gateway: Gateway) -> None:
    client = _client(gateway)
    before = _upstream_calls(gateway)
    answer, _ = _cached(client, "How do I rotate an AWS access key?")
    repeat, headers = _ask(client, "How do I rotate an AWS access key?")
    assert (repeat, headers["x-raygate-cache"]) == (answer, "exact")
    assert headers["x-raygate-route"] == "cache/exact"
    paraphrase, semantic = _ask(client, "What are the steps to rotate an AWS access key?")
    assert semantic["x-raygate-cache"] == "semantic"
    assert paraphrase == answer
    assert float(semantic["x-raygate-similarity"]) >= 0.95
    assert semantic["x-raygate-cost-usd"] == "0.00000000"
    assert _upstream_calls(gateway) == before + 1  # the miss only


def test_a_changed_number_is_sent_upstream_not_served(gateway: Gateway) -> None:
    client = _client(gateway)
    _cached(client, "What is 15% of 80 dollars?")
    before = _upstream_calls(gateway)
    _, headers = _ask(client, "What is 15% of 90 dollars?")
    assert headers["x-raygate-cache"] == "miss"
    assert _upstream_calls(gateway) == before + 1


def test_another_user_never_gets_my_cached_answer(gateway: Gateway) -> None:
    mine = _client(gateway)
    _cached(mine, "Summarise the notes from my last 1:1")
    _, theirs = _ask(_client(gateway), "Summarise the notes from my last 1:1")
    assert theirs["x-raygate-cache"] == "miss"


def test_a_streamed_hit_is_replayed_as_chunks_the_sdk_parses(gateway: Gateway) -> None:
    client = _client(gateway)
    text = "Explain what a reverse proxy does."
    streamed = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    original = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-raygate-cache"] == "exact"
    chunks = list(raw.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == original
    assert sum(1 for c in chunks if c.choices) > 2
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason == "stop" for c in chunks)


def test_cache_control_no_cache_goes_upstream(gateway: Gateway) -> None:
    client = _client(gateway)
    _cached(client, "What does HTTP 418 mean?")
    before = _upstream_calls(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": "What does HTTP 418 mean?"}],
        extra_headers={"x-raygate-cache-control": "no-cache"},
    )
    assert raw.headers["x-raygate-cache"] == "bypass"
    assert _upstream_calls(gateway) == before + 1


def test_hits_are_audited_with_their_phase(gateway: Gateway) -> None:
    user = f"cache-{uuid.uuid4().hex[:8]}"
    client = _client(gateway, user)
    _cached(client, "Where are the audit logs kept?")
    _ask(client, "Where are the audit logs kept?")
    admin = {"authorization": f"Bearer {gateway.admin_key}"}
    deadline = time.monotonic() + 10
    while True:
        records = httpx.get(
            f"{gateway.base_url}/admin/audit/records", params={"user": user}, headers=admin
        ).json()["records"]
        phases = [r["cache_phase"] for r in records]
        if "exact" in phases and "miss" in phases:
            break
        assert time.monotonic() < deadline, f"audit records never showed the hit: {phases}"
    hit = next(r for r in records if r["cache_phase"] == "exact")
    assert hit["cost_usd"] == 0 and hit["route_taken"] == "cache/exact"
    assert hit["cost_avoided_usd"] > 0  # the stored answer's tokens at sim-small's list price


def test_the_cli_invalidates_and_every_replica_forgets(gateway: Gateway) -> None:
    client = _client(gateway)
    _cached(client, "Which ports does Kerberos use?")
    dropped = gateway.cli("cache", "invalidate", "--model", MODEL)
    assert dropped.returncode == 0, dropped.stderr
    assert json.loads(dropped.stdout)["invalidated"] >= 1
    deadline = time.monotonic() + 10  # one sync interval (0.1 s here) is the bound
    while _ask(client, "Which ports does Kerberos use?")[1]["x-raygate-cache"] != "miss":
        assert time.monotonic() < deadline, "the cache kept serving an invalidated entry"


def test_admin_cache_stats_name_a_replica(gateway: Gateway) -> None:
    admin = {"authorization": f"Bearer {gateway.admin_key}"}
    stats = httpx.get(f"{gateway.base_url}/admin/cache", headers=admin).json()
    assert stats["replica"] and stats["entries"] >= 0
    assert set(stats["hits"]) == {"exact", "normalized", "semantic"}


def test_an_entry_stored_through_one_cache_replica_is_served_by_both(gateway: Gateway) -> None:
    client = _client(gateway)
    _cached(client, "How long are backups retained?")
    answered_by: set[str] = set()
    deadline = time.monotonic() + 10  # the bound is one sync interval (0.1 s in gateway.yaml)
    while len(answered_by) < 2:
        # no-store: the ingress keeps nothing of these, so every one asks a cache replica.
        _, headers = _ask(client, "How long are backups retained?", control="no-store")
        if headers["x-raygate-cache"] == "exact":
            answered_by.add(headers["x-raygate-cache-replica"])
        assert time.monotonic() < deadline, f"only {answered_by} answered"
    assert "ingress" not in answered_by


def test_a_repeat_a_cache_replica_served_is_then_answered_by_the_ingress(
    gateway: Gateway,
) -> None:
    client = _client(gateway)
    answer, _ = _cached(client, "Which team owns the VPN?")
    repeat, headers = _ask(client, "Which team owns the VPN?")  # a cache replica's hit
    assert (repeat, headers["x-raygate-cache"]) == (answer, "exact")
    assert headers["x-raygate-cache-replica"] != "ingress"
    # The ingress keeps a replica's hit once that replica has applied the log as far as the
    # ingress has read it (within a sync interval, 0.1 s here).
    deadline = time.monotonic() + 10
    while headers["x-raygate-cache-replica"] != "ingress":
        assert time.monotonic() < deadline, "the ingress never answered the repeat itself"
        near, headers = _ask(client, "Which team owns the VPN?")
        assert (near, headers["x-raygate-cache"]) == (answer, "exact")
    # Another user's identical question is another scope: never answered from this one.
    _, headers = _ask(_client(gateway), "Which team owns the VPN?")
    assert headers["x-raygate-cache"] == "miss"
