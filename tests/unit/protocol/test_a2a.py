"""What the gateway reads of A2A's JSON-RPC wire, in both protocol versions."""

from __future__ import annotations

import json

import pytest

from gateway.protocol.a2a import (
    RpcError,
    is_final,
    parse_request,
    task_id_of,
    text_parts,
    with_texts,
)

V1_TASK = {
    "task": {
        "id": "t1",
        "status": {"state": "TASK_STATE_COMPLETED", "message": {"parts": [{"text": "done"}]}},
        "artifacts": [{"artifactId": "a", "parts": [{"text": "one"}, {"data": {"text": "x"}}]}],
        "history": [{"role": "ROLE_USER", "parts": [{"text": "ask"}]}],
    }
}
V03_UPDATE = {
    "kind": "status-update",
    "taskId": "t2",
    "status": {"state": "working", "message": {"parts": [{"kind": "text", "text": "hm"}]}},
    "final": False,
}


def test_text_parts_are_found_wherever_parts_sit_and_data_parts_are_not_text() -> None:
    assert [p["text"] for p in text_parts(V1_TASK)] == ["done", "one", "ask"]
    assert [p["text"] for p in text_parts(V03_UPDATE)] == ["hm"]
    changed = with_texts(V1_TASK, lambda texts: [t.upper() for t in texts])
    assert [p["text"] for p in text_parts(changed)] == ["DONE", "ONE", "ASK"]
    assert V1_TASK["task"]["history"][0]["parts"][0]["text"] == "ask"  # a copy was changed


def test_final_events_end_a_stream_in_either_version() -> None:
    assert is_final(V1_TASK)
    assert not is_final(V03_UPDATE)
    assert is_final({**V03_UPDATE, "final": True})
    assert is_final({"statusUpdate": {"status": {"state": "TASK_STATE_INPUT_REQUIRED"}}})
    assert not is_final({"artifactUpdate": {"taskId": "t", "artifact": {"parts": []}}})
    assert is_final({"message": {"parts": []}})
    assert (task_id_of(V1_TASK), task_id_of(V03_UPDATE)) == ("t1", "t2")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"jsonrpc": "2.0", "id": true, "method": "GetTask", "params": {"id": "t"}}', -32600),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "tasks/pushNotificationConfig/set"}', -32003),
        (
            b'{"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": 1}}',
            -32602,
        ),
        (b"\xff\xfe", -32700),
    ],
)
def test_requests_the_gateway_does_not_forward_get_json_rpc_codes(body: bytes, code: int) -> None:
    with pytest.raises(RpcError) as refused:
        parse_request(body)
    assert refused.value.code == code


def test_a_0_3_send_is_forwarded_under_its_own_name() -> None:
    params = {"message": {"parts": [], "taskId": "t9"}}
    body = {"jsonrpc": "2.0", "id": "x", "method": "message/send", "params": params}
    request = parse_request(json.dumps(body).encode())
    assert (request.kind, request.task_id(), request.body()["method"]) == (
        "send",
        "t9",
        "message/send",
    )
