"""A2A agents through the gateway, in process: a real `a2a-sdk` agent on loopback (it echoes
what it received as a streamed task), the gateway's app over ASGI, and `a2a-sdk`'s own client
talking to the cards the gateway serves. Callers are told apart by trusted proxy headers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client import A2AClientError, ClientConfig, create_client
from a2a.client.client import Client
from a2a.helpers.proto_helpers import get_artifact_text, get_message_text, new_text_message
from a2a.types.a2a_pb2 import (
    GetTaskRequest,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)

from tests.support import free_port
from tests.support.a2a_agent import EchoAgent, running_agent
from tests.support.gateway import InProcessGateway, in_process_gateway

UPSTREAM_TOKEN = "agent-secret-0123456789"
CONFIG = """
auth:
  trusted_header:
    trusted_proxies: [127.0.0.1/32]
    groups_header: x-forwarded-groups
    email_header: x-forwarded-email
storage: {{url: "sqlite:///{db}"}}
cache: {{enabled: false}}
access:
  groups:
    research: {{policy: strict}}
    auditors: {{policy: outbound}}
policy:
  profiles:
    default: {{pii: {{"*": allow}}, output: {{"*": allow}}}}
    strict: {{pii: {{"*": allow, EMAIL: redact, US_SSN: block}}, output: {{"*": allow}}}}
    outbound: {{pii: {{"*": allow}}, output: {{"*": allow, EMAIL: redact}}}}
rate_limits:
  models:
    a2a/limited: {{rpm: 1}}
a2a:
  agents:
    echo: {{url: "{agent}", token: "{token}", groups: [research, auditors]}}
    open: {{url: "{agent}", groups: ["*"]}}
    finance: {{url: "{agent}", groups: [finance]}}
    trusting:
      url: "{agent}"
      groups: ["*"]
      forward_identity: {{enabled: true}}
    limited: {{url: "{agent}", groups: ["*"]}}
    cut: {{url: "{agent}", rpc_url: "{agent}/cut/", groups: ["*"]}}
    slow: {{url: "{agent}", groups: ["*"], timeout_s: 0.5}}
    legacy:
      url: "{agent}"
      groups: ["*"]
      card:
        name: Legacy
        description: the echo agent as an A2A 0.3 card
        version: "0.3"
        url: "{agent}/"
        preferredTransport: JSONRPC
        protocolVersion: "0.3.0"
        capabilities: {{streaming: true}}
        skills: []
    down: {{url: "http://127.0.0.1:{closed}", groups: ["*"]}}
"""
RESEARCHER = {"x-forwarded-user": "rita", "x-forwarded-groups": "research"}
AUDITOR = {"x-forwarded-user": "otto", "x-forwarded-groups": "auditors"}
STAFF = {"x-forwarded-user": "sam", "x-forwarded-groups": "staff"}


@pytest.fixture(scope="module")
def agent() -> Iterator[EchoAgent]:
    with running_agent() as running:
        yield running


@pytest_asyncio.fixture
async def gateway(tmp_path: Path, agent: EchoAgent) -> AsyncIterator[InProcessGateway]:
    config = CONFIG.format(
        db=tmp_path / "gw.db", agent=agent.url, token=UPSTREAM_TOKEN, closed=free_port()
    )
    agent.received.clear()
    agent.release.clear()
    async with in_process_gateway(config, headers={"a2a-version": "1.0"}) as gw:
        yield gw


async def client_for(
    gw: InProcessGateway, agent: str, caller: dict[str, str], *, streaming: bool = False
) -> Client:
    """`a2a-sdk`'s client, resolving the agent's card from the gateway."""
    http = httpx.AsyncClient(transport=gw.http._transport, headers=caller)
    config = ClientConfig(httpx_client=http, streaming=streaming)
    return await create_client(f"http://gw/a2a/{agent}", config)


def say(text: str) -> SendMessageRequest:
    return SendMessageRequest(message=new_text_message(text, role=Role.ROLE_USER))


async def send(client: Client, text: str) -> list[StreamResponse]:
    return [event async for event in client.send_message(say(text))]


def texts_of(task: Task) -> list[str]:
    """A task's texts: its status message, then its artifacts."""
    return [get_message_text(task.status.message)] + [get_artifact_text(a) for a in task.artifacts]


def rpc(method: str, params: dict[str, Any], request_id: int = 7) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}


def message(text: str) -> dict[str, Any]:
    return {"message": {"role": "ROLE_USER", "messageId": "m-1", "parts": [{"text": text}]}}


@pytest.mark.asyncio
async def test_discovery_lists_the_callers_agents_with_their_urls_at_the_gateway(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    researcher = await gateway.http.get("/a2a/agents", headers=RESEARCHER)
    staff = await gateway.http.get("/a2a/agents", headers=STAFF)
    assert researcher.status_code == staff.status_code == 200
    mine = {a["name"]: a for a in researcher.json()["agents"]}
    theirs = {a["name"] for a in staff.json()["agents"]}
    assert "echo" in mine and "finance" not in mine
    assert "echo" not in theirs and "open" in theirs and "finance" not in theirs
    echo = mine["echo"]
    assert echo["url"] == "http://gw/a2a/echo"
    assert [i["url"] for i in echo["card"]["supportedInterfaces"]] == ["http://gw/a2a/echo"]
    assert mine["down"]["card"] is None and "could not be reached" in mine["down"]["error"]
    card = await gateway.http.get("/a2a/echo/.well-known/agent-card.json", headers=RESEARCHER)
    assert card.status_code == 200
    assert card.json()["name"] == "Echo"
    assert card.json()["supportedInterfaces"][0]["url"] == "http://gw/a2a/echo"
    assert agent.url not in card.text and UPSTREAM_TOKEN not in card.text
    assert "raygate" in card.json()["securitySchemes"]


@pytest.mark.asyncio
async def test_an_agent_outside_the_callers_groups_is_hidden_and_refused(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    card = await gateway.http.get("/a2a/echo/.well-known/agent-card.json", headers=STAFF)
    assert card.status_code == 404 and card.json()["error"]["code"] == "agent_not_found"
    call = await gateway.post("/a2a/echo", rpc("SendMessage", message("hi")), headers=STAFF)
    assert call.status_code == 403 and call.json()["error"]["code"] == "agent_not_allowed"
    unknown = await gateway.post("/a2a/nobody", rpc("SendMessage", message("hi")), headers=STAFF)
    assert unknown.status_code == 404
    anonymous = await gateway.http.post("/a2a/open", json=rpc("SendMessage", message("hi")))
    assert anonymous.status_code == 401
    assert agent.received == []


@pytest.mark.asyncio
async def test_the_sdk_client_sends_through_the_gateway_with_the_agents_credential(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    client = await client_for(gateway, "echo", {**RESEARCHER, "authorization": "Bearer mine"})
    (event,) = await send(client, "hello agent")
    task = event.task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert texts_of(task) == ["done: hello agent", "echo: hello\n agent"]
    (received,) = agent.received
    assert received.text == "hello agent"
    assert received.headers["authorization"] == f"Bearer {UPSTREAM_TOKEN}"
    assert "x-forwarded-user" not in received.headers  # identity is not forwarded by default
    fetched = await client.get_task(GetTaskRequest(id=task.id))
    assert fetched.id == task.id and fetched.status.state == TaskState.TASK_STATE_COMPLETED
    raw = await gateway.post("/a2a/echo", rpc("GetTask", {"id": task.id}), headers=RESEARCHER)
    assert UPSTREAM_TOKEN not in raw.text and raw.json()["id"] == 7


@pytest.mark.asyncio
async def test_a_stream_is_relayed_event_by_event(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    client = await client_for(gateway, "echo", RESEARCHER, streaming=True)
    events = await send(client, "stream me")
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and kinds[-1] == "status_update"
    assert kinds.count("artifact_update") == 2
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    chunks = [get_artifact_text(e.artifact_update.artifact) for e in events[2:4]]
    assert "".join(chunks) == "echo: stream me"
    raw = await gateway.post(
        "/a2a/echo", rpc("SendStreamingMessage", message("raw")), headers=RESEARCHER
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    data = [json.loads(line[6:]) for line in raw.text.splitlines() if line.startswith("data: ")]
    assert len(data) == 5 and all(d["id"] == 7 and "result" in d for d in data)


@pytest.mark.asyncio
async def test_pii_is_redacted_before_the_agent_sees_it(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    client = await client_for(gateway, "echo", RESEARCHER)
    (event,) = await send(client, "write to ana@example.org please")
    (received,) = agent.received
    assert received.text == "write to [EMAIL_1] please"
    assert "ana@example.org" not in json.dumps(texts_of(event.task))


@pytest.mark.asyncio
async def test_a_blocked_message_is_a_json_rpc_error_and_never_sent(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    client = await client_for(gateway, "echo", RESEARCHER)
    with pytest.raises(A2AClientError, match="blocked by policy"):
        await send(client, "my ssn is 123-45-6789")
    raw = await gateway.post(
        "/a2a/echo", rpc("SendMessage", message("ssn 123-45-6789")), headers=RESEARCHER
    )
    assert raw.status_code == 200
    error = raw.json()["error"]
    assert error["code"] == -32090 and "pii.US_SSN" in error["message"]
    assert error["data"][0]["metadata"]["code"] == "policy_violation"
    assert agent.received == []


@pytest.mark.asyncio
@pytest.mark.parametrize("streaming", [False, True])
async def test_the_output_policy_redacts_what_the_agent_answers(
    gateway: InProcessGateway, agent: EchoAgent, streaming: bool
) -> None:
    client = await client_for(gateway, "echo", AUDITOR, streaming=streaming)
    events = await send(client, "reach ana@example.org")
    assert agent.received[0].text == "reach ana@example.org"  # the input rule only monitors
    shown = "".join(str(e) for e in events)
    assert "ana@example.org" not in shown and "[EMAIL_1]" in shown


@pytest.mark.asyncio
async def test_a_broken_upstream_stream_ends_with_a_json_rpc_error_event(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    raw = await gateway.post("/a2a/cut", rpc("SendStreamingMessage", message("x")), headers=STAFF)
    assert raw.status_code == 200
    blocks = [b for b in raw.text.split("\n\n") if b.strip()]
    assert len(blocks) == 2 and blocks[-1].startswith("event: error\n")
    error = json.loads(blocks[-1].split("data: ", 1)[1])["error"]
    assert error["code"] == -32092 and "broke off its stream" in error["message"]
    client = await client_for(gateway, "cut", STAFF, streaming=True)
    with pytest.raises(A2AClientError):
        await send(client, "y")
    records = await gateway.records()
    assert [r["error_code"] for r in records if r["route"] == "/a2a/cut"] == ["upstream_error"] * 2


@pytest.mark.asyncio
async def test_an_unreachable_agent_is_a_json_rpc_error(gateway: InProcessGateway) -> None:
    raw = await gateway.post("/a2a/down", rpc("SendMessage", message("hi")), headers=STAFF)
    assert raw.status_code == 200
    assert raw.json()["error"]["code"] == -32092 and raw.json()["id"] == 7


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", -32700),
        (b"[]", -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "GetTask", "params": {"id": "t"}}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "Reboot"}', -32601),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ListTasks", "params": {}}', -32004),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {}}', -32602),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": []}', -32602),
    ],
)
async def test_malformed_json_rpc_gets_json_rpcs_own_errors(
    gateway: InProcessGateway, agent: EchoAgent, body: bytes, code: int
) -> None:
    response = await gateway.post("/a2a/open", content=body, headers=STAFF)
    assert response.status_code == 200
    assert response.json()["error"]["code"] == code
    assert agent.received == []


@pytest.mark.asyncio
async def test_identity_reaches_the_agent_only_where_configured(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    spoofed = {**STAFF, "x-raygate-user": "root", "x-forwarded-email": "sam@example.org"}
    await gateway.post("/a2a/open", rpc("SendMessage", message("a")), headers=spoofed)
    await gateway.post("/a2a/trusting", rpc("SendMessage", message("b")), headers=spoofed)
    plain, trusting = agent.received
    assert "x-raygate-user" not in plain.headers and "authorization" not in plain.headers
    assert trusting.headers["x-raygate-user"] == "sam"
    assert trusting.headers["x-raygate-email"] == "sam@example.org"
    assert trusting.headers["x-raygate-groups"] == "staff"


@pytest.mark.asyncio
async def test_rate_limits_hold_per_agent(gateway: InProcessGateway, agent: EchoAgent) -> None:
    first = await gateway.post("/a2a/limited", rpc("SendMessage", message("1")), headers=STAFF)
    second = await gateway.post("/a2a/limited", rpc("SendMessage", message("2")), headers=STAFF)
    assert "result" in first.json()
    assert second.json()["error"]["code"] == -32091
    assert int(second.headers["retry-after"]) >= 1
    assert [r.text for r in agent.received] == ["1"]


@pytest.mark.asyncio
async def test_each_call_leaves_one_audit_record(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    client = await client_for(gateway, "echo", RESEARCHER)
    (event,) = await send(client, "audit me")
    blocked_call = rpc("SendMessage", message("ssn 123-45-6789"))
    await gateway.post("/a2a/echo", blocked_call, headers=RESEARCHER)
    records = [r for r in await gateway.records() if r["route"] == "/a2a/echo"]
    blocked, sent = records  # newest first
    assert sent["principal"]["user_id"] == "rita"
    assert (sent["model_requested"], sent["admin_action"]) == ("a2a/echo", "a2a.SendMessage")
    assert sent["admin_target"] == f"task:{event.task.id}"
    assert sent["prompt"] == hashlib.sha256(b"audit me").hexdigest()
    assert sent["prompt_mode"] == "hash" and sent["response"] is not None
    assert (sent["status"], sent["error_code"]) == (200, None)
    assert sent["latency_ms"] > 0
    assert blocked["error_code"] == "policy_violation"
    assert [d["action"] for d in blocked["decisions"]] == ["block"]


@pytest.mark.asyncio
async def test_a_task_is_cancelled_through_the_gateway(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    started = await gateway.post(
        "/a2a/open",
        rpc("SendMessage", {**message("hold on"), "configuration": {"returnImmediately": True}}),
        headers=STAFF,
    )
    task = started.json()["result"]["task"]
    assert task["status"]["state"] != "TASK_STATE_COMPLETED"
    cancelled = await gateway.post(
        "/a2a/open", rpc("CancelTask", {"id": task["id"]}), headers=STAFF
    )
    assert cancelled.json()["result"]["status"]["state"] == "TASK_STATE_CANCELED"
    (record, _) = [r for r in await gateway.records() if r["route"] == "/a2a/open"]
    assert (record["admin_action"], record["admin_target"]) == (
        "a2a.CancelTask",
        f"task:{task['id']}",
    )


@pytest.mark.asyncio
async def test_an_agent_that_does_not_answer_in_time_is_a_json_rpc_timeout(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    response = await gateway.post("/a2a/slow", rpc("SendMessage", message("hold")), headers=STAFF)
    agent.release.set()  # the held task may finish now
    error = response.json()["error"]
    assert error["code"] == -32093 and "did not answer within 0.5 s" in error["message"]
    (record,) = [r for r in await gateway.records() if r["route"] == "/a2a/slow"]
    assert record["error_code"] == "upstream_timeout"


@pytest.mark.asyncio
@pytest.mark.parametrize("streaming", [False, True])
async def test_an_a2a_0_3_agent_is_reached_with_0_3s_methods(
    gateway: InProcessGateway, agent: EchoAgent, streaming: bool
) -> None:
    card = await gateway.http.get("/a2a/legacy/.well-known/agent-card.json", headers=STAFF)
    assert card.json()["supportedInterfaces"][0]["protocolVersion"] == "0.3.0"
    client = await client_for(gateway, "legacy", STAFF, streaming=streaming)
    events = await send(client, "old times")
    assert "done: old times" in "".join(str(e) for e in events)
    (record,) = [r for r in await gateway.records() if r["route"] == "/a2a/legacy"]
    assert record["admin_action"] == ("a2a.message/stream" if streaming else "a2a.message/send")
    assert record["error_code"] is None


@pytest.mark.asyncio
async def test_a_push_notification_configuration_is_refused(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    push = {"taskPushNotificationConfig": {"url": "http://attacker.example/hook"}}
    response = await gateway.post(
        "/a2a/open", rpc("SendMessage", {**message("x"), "configuration": push}), headers=STAFF
    )
    assert response.json()["error"]["code"] == -32003
    assert agent.received == []


@pytest.mark.asyncio
async def test_a_task_is_reachable_only_by_the_caller_who_started_it(
    gateway: InProcessGateway, agent: EchoAgent
) -> None:
    # The agent sees one client (the gateway's credential): the gateway keeps tasks apart.
    started = await gateway.post(
        "/a2a/open",
        rpc("SendMessage", {**message("hold on"), "configuration": {"returnImmediately": True}}),
        headers=STAFF,
    )
    task = started.json()["result"]["task"]["id"]
    other = {"x-forwarded-user": "mallory", "x-forwarded-groups": "staff"}
    sends_before = len(agent.received)
    for method in ("GetTask", "CancelTask", "SubscribeToTask"):
        refused = await gateway.post("/a2a/open", rpc(method, {"id": task}), headers=other)
        assert refused.json()["error"]["code"] == -32001, method
    continued = await gateway.post(
        "/a2a/open",
        rpc("SendMessage", {"message": {**message("me too")["message"], "taskId": task}}),
        headers=other,
    )
    assert continued.json()["error"]["code"] == -32001
    assert len(agent.received) == sends_before
    made_up = await gateway.post("/a2a/open", rpc("GetTask", {"id": "no-such"}), headers=STAFF)
    assert made_up.json()["error"]["code"] == -32001
    mine = await gateway.post("/a2a/open", rpc("CancelTask", {"id": task}), headers=STAFF)
    assert mine.json()["result"]["status"]["state"] == "TASK_STATE_CANCELED"
