"""The audit trail through the whole gateway: every request leaves one chained record, queried
through the admin API and the CLI, and an edit of the stored trail is caught by `verify`."""

from __future__ import annotations

import sqlite3
import uuid

import httpx
import openai
import pytest

from tests.e2e.conftest import Gateway

CHAT = {"messages": [{"role": "user", "content": "What is our travel policy?"}]}


def test_a_chat_request_leaves_a_record_with_who_what_and_how(gateway: Gateway) -> None:
    user = f"auditee-{uuid.uuid4().hex[:6]}"
    secret = gateway.issue_key(user, "--department", "finance", "--group", "finance")
    client = openai.OpenAI(base_url=gateway.v1, api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="sim-small", **CHAT)
    request_id = raw.headers["x-raygate-request-id"]

    (record,) = gateway.audit_records(1, user=user)
    assert record["request_id"] == request_id
    assert record["principal"]["department"] == "finance"
    assert record["principal"]["groups"] == ["finance"]
    assert record["principal"]["auth_method"] == "api_key"
    assert record["model_requested"] == "sim-small"
    assert record["route_taken"] == "simulator/sim-small"
    assert record["status"] == 200 and record["tokens_in"] > 0 and record["tokens_out"] > 0
    assert record["prompt_mode"] == "hash" and len(record["prompt"]) == 64  # sha256, not text
    assert "travel" not in str(record)


def test_refusals_and_streams_are_recorded_with_their_outcome(gateway: Gateway) -> None:
    user = f"auditee-{uuid.uuid4().hex[:6]}"
    secret = gateway.issue_key(user, "--group", "contractors")
    client = openai.OpenAI(base_url=gateway.v1, api_key=secret, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="sim-claude", **CHAT)
    stream = client.chat.completions.create(
        model="sim-small", stream=True, stream_options={"include_usage": True}, **CHAT
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    records = {r["status"]: r for r in gateway.audit_records(2, user=user)}
    assert records[403]["error_code"] == "model_not_allowed"
    assert records[200]["error_code"] is None and records[200]["tokens_out"] > 0


def test_a_stream_cut_mid_way_is_recorded_as_failed_not_passed(gateway: Gateway) -> None:
    user = f"auditee-{uuid.uuid4().hex[:6]}"
    secret = gateway.issue_key(user)
    gateway.inject(kind="cut", after_chunks=2, match_model="sim-small")
    client = openai.OpenAI(base_url=gateway.v1, api_key=secret, max_retries=0)
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(model="sim-small", stream=True, **CHAT):
            pass
    (record,) = gateway.audit_records(1, user=user)
    assert record["error_code"] not in (None, "")


def test_summary_counts_requests_by_department(gateway: Gateway) -> None:
    department = f"dept-{uuid.uuid4().hex[:6]}"
    for n in range(3):
        secret = gateway.issue_key(f"{department}-user{n}", "--department", department)
        client = openai.OpenAI(base_url=gateway.v1, api_key=secret, max_retries=0)
        client.chat.completions.create(model="sim-small", **CHAT)
    gateway.audit_records(3, department=department)
    summary = httpx.get(
        f"{gateway.base_url}/admin/audit/summary",
        params={"by": "department", "department": department},
        headers={"authorization": f"Bearer {gateway.admin_key}"},
    ).json()
    (row,) = summary["rows"]
    assert row["key"] == department and row["count"] == 3 and row["tokens_in"] > 0


def test_the_cli_verifies_the_live_trail_and_catches_an_edit(gateway: Gateway) -> None:
    user = f"auditee-{uuid.uuid4().hex[:6]}"
    secret = gateway.issue_key(user)
    openai.OpenAI(base_url=gateway.v1, api_key=secret, max_retries=0).models.list()
    (record,) = gateway.audit_records(1, user=user)

    intact = gateway.cli("audit", "verify")
    assert intact.returncode == 0, intact.stderr

    database = gateway.env["RAYGATE_STATE_DIR"] + "/raygate.db"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_records SET status = 500 WHERE id = ?", (record["id"],))
    broken = gateway.cli("audit", "verify")
    assert broken.returncode != 0
    assert str(record["seq"]) in broken.stderr + broken.stdout
    with sqlite3.connect(database) as db:  # put it back for the tests after this one
        db.execute("UPDATE audit_records SET status = 200 WHERE id = ?", (record["id"],))
    assert gateway.cli("audit", "verify").returncode == 0
