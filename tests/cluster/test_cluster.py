"""raygate on a three-raylet cluster: every kind of request through the `openai` SDK, replicas
on the workers, and the shared state (PostgreSQL, Redis) that makes replicas interchangeable."""

from __future__ import annotations

import time

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.cluster.stack import ADMIN_KEY, Deployed, deployments, minimum
from tests.servers.ray_cluster import wait_for

pytestmark = pytest.mark.slow


def client(deployed: Deployed) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{deployed.base_url}/v1", api_key=deployed.api_key, max_retries=0
    )


def test_replicas_run_on_the_workers_only(deployed: Deployed) -> None:
    placement = deployed.cluster.placement()
    for deployment in deployments(deployed.config):
        assert placement[deployment], placement
        assert set(placement[deployment]) <= {"worker-a", "worker-b"}, placement
    # Two cache replicas, spread or not, both answer (checked by the cache test below).
    assert len(placement["Cache"]) >= 2


def test_chat_stream_and_cache_hit_through_the_sdk(deployed: Deployed) -> None:
    sdk = client(deployed)
    question: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Which cluster answers this question?"}
    ]
    first = sdk.chat.completions.with_raw_response.create(model="sim-small", messages=question)
    assert first.headers["x-raygate-cache"] == "miss"
    answer = first.parse().choices[0].message.content
    assert answer

    chunks = list(sdk.chat.completions.create(
        model="sim-small", stream=True,
        messages=[{"role": "user", "content": "Stream me something, cluster."}],
    ))  # fmt: skip
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert "".join(c.choices[0].delta.content or "" for c in chunks)

    # The same question again, many times: every hit carries the first answer, whichever
    # ingress and cache replica took it (the entry log in PostgreSQL keeps them in step).
    # no-store: not kept in the ingress's near cache, so a cache replica answers each.
    no_store = {"x-raygate-cache-control": "no-store"}
    for _ in range(6):
        again = sdk.chat.completions.with_raw_response.create(
            model="sim-small", messages=question, extra_headers=no_store
        )
        assert again.headers["x-raygate-cache"] == "exact"
        assert again.parse().choices[0].message.content == answer
    # Without it, an ingress replica keeps a cache replica's hit and answers a repeat itself.
    deadline = time.monotonic() + 60
    while again.headers.get("x-raygate-cache-replica") != "ingress":
        assert time.monotonic() < deadline, "no ingress replica answered a repeat itself"
        again = sdk.chat.completions.with_raw_response.create(model="sim-small", messages=question)
        assert again.headers["x-raygate-cache"] == "exact"
        assert again.parse().choices[0].message.content == answer


def test_the_audit_trail_records_the_clients_address_through_haproxy(deployed: Deployed) -> None:
    # HAProxy takes the connection (raygate-haproxy names the client to the ingress, with the
    # nodes' RAYGATE_PROXY_SECRET): the record holds the client's address, not the node's.
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    issued = httpx.post(
        f"{deployed.base_url}/admin/keys", headers=admin,
        json={"user": "addressed", "name": "client address"}, timeout=30,
    )  # fmt: skip
    assert issued.status_code == 201, issued.text
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3"), timeout=60) as http:
        sdk = openai.OpenAI(
            base_url=f"{deployed.base_url}/v1", api_key=issued.json()["secret"],
            max_retries=0, http_client=http,
        )  # fmt: skip
        sdk.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "Where am I calling from?"}]
        )
    records: list[dict[str, object]] = []

    def recorded() -> bool:
        records[:] = httpx.get(
            f"{deployed.base_url}/admin/audit/records", headers=admin,
            params={"user": "addressed"}, timeout=30,
        ).json()["records"]  # fmt: skip
        return bool(records)

    wait_for(recorded, 60, "the audit record of the call")
    assert [r["client_address"] for r in records] == ["127.0.0.3"]


def test_admin_routing_shows_every_router_replica(deployed: Deployed) -> None:
    """Breakers and health are each router's own (one per ingress replica, or per Router
    replica where it has a deployment); the status board shows them all."""
    holder = "Router" if "Router" in deployments(deployed.config) else "Ingress"
    routers = minimum(deployed.config, holder)
    seen: set[str] = set()

    def every_replica_published() -> bool:
        answer = httpx.get(
            f"{deployed.base_url}/admin/routing/replicas",
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        seen.update(r["replica"] for r in answer.json()["replicas"])
        return len(seen) >= routers

    wait_for(every_replica_published, 60, f"{routers} router replicas on the status board")
