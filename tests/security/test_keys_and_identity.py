"""Findings 2, 7 and 9 through the running gateway: a revoked key stops at once, grace period
or not; the default keys never leave loopback; identity headers are taken from the trusted
proxy only, and only the ones configured; a client trickling its body is cut off."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import yaml

from tests.security.conftest import CONFIG, Target

HI = [{"role": "user", "content": "hi"}]


def _rotate(target: Target, key_id: str, grace_s: float) -> str:
    with target.admin() as admin:
        rotated = admin.post(f"/admin/keys/{key_id}/rotate", json={"grace_seconds": grace_s})
    assert rotated.status_code == 201, rotated.text
    return str(rotated.json()["secret"])


def _revoke(target: Target, key_id: str) -> None:
    """Revoke `key_id` (once: a revocation takes its write lock before it reads)."""
    with target.admin() as admin:
        revoked = admin.delete(f"/admin/keys/{key_id}")
    assert revoked.status_code == 200, revoked.text


def _refused(target: Target, secret: str) -> None:
    """`secret` is refused as revoked, by both SDKs."""
    with pytest.raises(openai.AuthenticationError) as caught:
        target.openai(secret).chat.completions.create(model="sim-small", messages=HI)  # type: ignore[arg-type]
    assert caught.value.code == "api_key_revoked"
    with pytest.raises(anthropic.AuthenticationError):
        target.anthropic(secret).messages.create(model="sim-small", max_tokens=20, messages=HI)  # type: ignore[arg-type]


def test_a_key_revoked_during_its_rotation_grace_stops_at_once(target: Target) -> None:
    old = target.issue()
    new = _rotate(target, old.key_id, grace_s=3600)
    target.openai(old.secret).models.list()  # in its grace period
    _revoke(target, old.key_id)
    _refused(target, old.secret)
    target.openai(new).models.list()
    assert target.upstream_bodies() == []


def test_revoking_the_replacement_also_ends_the_grace_of_the_key_it_replaced(
    target: Target,
) -> None:
    old = target.issue()
    _rotate(target, old.key_id, grace_s=3600)
    with target.admin() as admin:
        listed = admin.get("/admin/keys", params={"user": old.user}).json()["data"]
    (replacement,) = [k for k in listed if k["id"] != old.key_id]
    _revoke(target, replacement["id"])
    _refused(target, old.secret)


def test_a_key_in_its_grace_period_cannot_be_rotated_again(target: Target) -> None:
    """Rotating the old key again would stretch its grace: refused, the key is rotated once."""
    old = target.issue()
    _rotate(target, old.key_id, grace_s=60)
    with target.admin() as admin:
        again = admin.post(f"/admin/keys/{old.key_id}/rotate", json={"grace_seconds": 3600})
    assert again.status_code in (400, 409), again.text
    assert again.json()["error"]["message"]


@pytest.mark.parametrize(
    "header",
    ["authorization: Bearer  {s}", "authorization: bearer {s}", "x-api-key: {s}",
     "authorization: BEARER {s}"],
)  # fmt: skip
def test_a_revoked_key_stays_refused_however_it_is_presented(target: Target, header: str) -> None:
    issued = target.issue()
    _revoke(target, issued.key_id)
    name, value = header.format(s=issued.secret).split(": ", 1)
    response = httpx.get(f"{target.v1}/models", headers={name: value})
    assert response.status_code == 401, response.text


@pytest.mark.parametrize(
    ("serve", "auth", "says"),
    [
        ({"host": "0.0.0.0"}, {"dev_key": "sk-raygate-dev"}, "dev_key"),
        ({"host": "0.0.0.0"}, {"admin_key": "sk-raygate-admin"}, "admin_key"),
        ({"host": "127.0.0.1"}, {"admin_key": "short-admin"}, "admin_key"),
    ],
    ids=["dev-key-off-loopback", "default-admin-key-off-loopback", "short-admin-key"],
)
def test_the_gateway_refuses_to_start_with_keys_anyone_could_guess(
    target: Target, tmp_path: Path, serve: dict[str, str], auth: dict[str, str], says: str
) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["serve"].update(serve)
    config["auth"].update({"dev_key": None, "admin_key": target.admin_key, **auth})
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    checked = target.cli("check-config", "--config", str(path))
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert says in checked.stderr


@pytest.mark.parametrize(
    "spoof",
    [
        {"x-forwarded-for": "127.0.0.2"},
        {"forwarded": "for=127.0.0.2"},
        {"x-real-ip": "127.0.0.2"},
        {"x-forwarded-for": "127.0.0.2, 127.0.0.1"},
    ],
)
def test_a_client_cannot_pose_as_the_trusted_proxy(target: Target, spoof: dict[str, str]) -> None:
    response = httpx.get(
        f"{target.base_url}/admin/audit/records",
        headers={"x-forwarded-user": "ceo", "x-forwarded-groups": "gateway-admins", **spoof},
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "untrusted_proxy"


def test_groups_a_client_adds_behind_the_proxy_are_not_read(target: Target) -> None:
    """The proxy (127.0.0.2) sets the user; the client's own X-Forwarded-Groups passes through
    it. Configured with the user header only, the gateway reads no groups: no admin role, and
    the audit record shows none."""
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    headers = {"x-forwarded-user": "mallory", "x-forwarded-groups": "gateway-admins,compliance"}
    with httpx.Client(transport=transport, base_url=target.base_url, headers=headers) as proxy:
        assert proxy.get("/admin/audit/records").status_code in (401, 403)
        answered = proxy.post("/v1/chat/completions", json={"model": "sim-small", "messages": HI})
    assert answered.status_code == 200, answered.text
    record = target.record(answered.headers["x-raygate-request-id"])
    assert record["principal"]["user_id"] == "mallory"
    assert record["principal"]["groups"] == []


def test_a_client_that_never_finishes_its_body_gets_408(target: Target) -> None:
    host, port = target.base_url.removeprefix("http://").split(":")
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        f"Authorization: Bearer {target.dev_key}\r\n"
        "Content-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
        '{"model": "sim-small", '
    )
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(head.encode())
        answer = conn.recv(65536).decode(errors="replace")  # waits for the gateway's verdict
    # Behind HAProxy (raygate up's front) HAProxy holds the request and answers itself, with
    # the gateway's error shape; behind Serve's proxy the gateway answers (body_timeout_s).
    assert answer.startswith("HTTP/1.1 408"), answer[:200]
    error = json.loads(answer.partition("\r\n\r\n")[2])["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "request_timeout")
    assert target.upstream_bodies() == []
