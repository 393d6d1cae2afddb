"""An A2A agent through the running gateway: `a2a-sdk`'s client finds the agent's card at the
gateway, streams a message to it and reads its task back; the agent (a real `a2a-sdk` server
started by the conftest) sees the message redacted by the caller's policy and the gateway's
credential for it, and the trail keeps one record per call."""

from __future__ import annotations

import httpx
import pytest
from a2a.client import ClientConfig, create_client
from a2a.helpers.proto_helpers import get_artifact_text, new_text_message
from a2a.types.a2a_pb2 import GetTaskRequest, Role, SendMessageRequest, TaskState

from tests.e2e.conftest import Gateway
from tests.support.a2a_agent import EchoAgent

# Contractors (policy `strict`: personal data redacted) may use the agent; the gateway trusts
# identity headers from 127.0.0.2 (gateway.yaml), where this test plays the proxy.
CONTRACTOR = {"x-forwarded-user": "a2a-carla", "x-forwarded-groups": "contractors"}
EMAIL = "ana@example.org"


def _as_proxy(headers: dict[str, str]) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    return httpx.AsyncClient(transport=transport, headers=headers, timeout=60)


@pytest.mark.asyncio
async def test_an_a2a_agent_through_the_running_gateway(
    gateway: Gateway, a2a_agent: EchoAgent
) -> None:
    endpoint = f"{gateway.base_url}/a2a/echo"
    developer = {"authorization": f"Bearer {gateway.api_key}"}
    async with httpx.AsyncClient(headers=developer) as outsider:
        hidden = await outsider.get(f"{endpoint}/.well-known/agent-card.json")
        listed = await outsider.get(f"{gateway.base_url}/a2a/agents")
    assert hidden.status_code == 404 and listed.json()["agents"] == []

    async with _as_proxy(CONTRACTOR) as http:
        (entry,) = (await http.get(f"{gateway.base_url}/a2a/agents")).json()["agents"]
        assert entry["url"] == endpoint
        client = await create_client(endpoint, ClientConfig(httpx_client=http, streaming=True))
        message = new_text_message(f"Summarise the meeting notes for {EMAIL}", role=Role.ROLE_USER)
        events = [e async for e in client.send_message(SendMessageRequest(message=message))]
        final = events[-1].status_update.status
        assert final.state == TaskState.TASK_STATE_COMPLETED
        echoed = "".join(
            get_artifact_text(e.artifact_update.artifact)
            for e in events
            if e.artifact_update.artifact.parts
        )
        assert echoed == "echo: Summarise the meeting notes for [EMAIL_1]"
        task_id = events[0].task.id
        task = await client.get_task(GetTaskRequest(id=task_id))
        assert task.status.state == TaskState.TASK_STATE_COMPLETED

    received = a2a_agent.received[-1]
    assert received.text == "Summarise the meeting notes for [EMAIL_1]"
    assert received.headers["authorization"] == "Bearer a2a-agent-secret-e2e"
    assert "x-forwarded-user" not in received.headers

    records = gateway.audit_records(4, user=CONTRACTOR["x-forwarded-user"])
    calls = {r["admin_action"]: r for r in records if r["route"] == "/a2a/echo"}
    assert set(calls) == {"a2a.SendStreamingMessage", "a2a.GetTask"}
    for record in calls.values():
        assert record["admin_target"] == f"task:{task_id}"
        assert record["model_requested"] == "a2a/echo"
        assert (record["status"], record["error_code"]) == (200, None)
    sent = calls["a2a.SendStreamingMessage"]
    assert "redact" in [d["action"] for d in sent["decisions"]]
    assert EMAIL not in str(sent)
