"""Issued API keys through the whole gateway: the CLI and the admin API issue them, the
official `openai` SDK uses them, and revocation, expiry, rotation and group access hold."""

from __future__ import annotations

import re
import uuid

import httpx
import openai
import pytest

from tests.e2e.conftest import Gateway

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


def _client(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=key, max_retries=0)


def _admin(gateway: Gateway) -> httpx.Client:
    return httpx.Client(
        base_url=gateway.base_url, headers={"authorization": f"Bearer {gateway.admin_key}"}
    )


def _issue_with_cli(gateway: Gateway, *args: str) -> tuple[str, str]:
    result = gateway.cli("keys", "issue", *args)
    assert result.returncode == 0, result.stderr
    key_id = re.search(r"key id: (\S+)", result.stdout)
    secret = re.search(r"secret: (rg-\S+)", result.stdout)
    assert key_id and secret, result.stdout
    return key_id.group(1), secret.group(1)


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def test_a_key_issued_with_the_cli_works_with_the_openai_sdk(gateway: Gateway) -> None:
    _, secret = _issue_with_cli(gateway, "--user", _user(), "--department", "research")
    reply = _client(gateway, secret).chat.completions.create(model="sim-small", **CHAT)
    assert reply.choices[0].message.content


def test_the_secret_is_never_listed_or_stored(gateway: Gateway) -> None:
    user = _user()
    key_id, secret = _issue_with_cli(gateway, "--user", user)
    listed = gateway.cli("keys", "list", "--user", user, "--json")
    assert listed.returncode == 0 and key_id in listed.stdout
    assert secret not in listed.stdout
    database = (gateway.env["RAYGATE_STATE_DIR"] + "/raygate.db").encode()
    with open(database, "rb") as stored:
        assert secret.encode() not in stored.read()


def test_a_revoked_key_is_refused_on_the_next_request(gateway: Gateway) -> None:
    key_id, secret = _issue_with_cli(gateway, "--user", _user())
    client = _client(gateway, secret)
    client.models.list()
    assert gateway.cli("keys", "revoke", key_id).returncode == 0
    with pytest.raises(openai.AuthenticationError) as caught:
        client.models.list()
    assert caught.value.code == "api_key_revoked"


def test_an_expired_key_is_refused(gateway: Gateway) -> None:
    _, secret = _issue_with_cli(gateway, "--user", _user(), "--expires", "2020-01-01")
    with pytest.raises(openai.AuthenticationError) as caught:
        _client(gateway, secret).models.list()
    assert caught.value.code == "api_key_expired"


def test_a_made_up_key_of_the_right_shape_is_refused(gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        _client(gateway, "rg-000000000000-" + "A" * 43).models.list()
    assert caught.value.code == "invalid_api_key"


def test_admin_api_issues_rotates_and_revokes(gateway: Gateway) -> None:
    with _admin(gateway) as admin:
        issued = admin.post("/admin/keys", json={"user": _user(), "name": "ci"})
        assert issued.status_code == 201, issued.text
        old_id, old_secret = issued.json()["key"]["id"], issued.json()["secret"]
        _client(gateway, old_secret).models.list()

        rotated = admin.post(f"/admin/keys/{old_id}/rotate", json={"grace_seconds": 0})
        assert rotated.status_code == 201, rotated.text
        new_secret = rotated.json()["secret"]
        assert rotated.json()["key"]["name"] == "ci" and new_secret != old_secret
        _client(gateway, new_secret).models.list()
        with pytest.raises(openai.AuthenticationError):
            _client(gateway, old_secret).models.list()

        revoked = admin.delete(f"/admin/keys/{rotated.json()['key']['id']}")
        assert revoked.json()["key"]["state"] == "revoked"
        with pytest.raises(openai.AuthenticationError):
            _client(gateway, new_secret).models.list()


def test_the_admin_api_needs_the_admin_key(gateway: Gateway) -> None:
    _, secret = _issue_with_cli(gateway, "--user", _user(), "--role", "admin")
    for key in (secret, gateway.api_key):
        response = httpx.post(
            f"{gateway.base_url}/admin/keys",
            json={"user": "mallory"},
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_admin_key"


def test_admin_api_rejects_a_bad_body_in_openai_shape(gateway: Gateway) -> None:
    with _admin(gateway) as admin:
        response = admin.post("/admin/keys", json={"user": "", "colour": "blue"})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_group_access_limits_the_models_a_user_sees_and_uses(gateway: Gateway) -> None:
    _, secret = _issue_with_cli(gateway, "--user", _user(), "--group", "contractors")
    client = _client(gateway, secret)
    assert sorted(m.id for m in client.models.list()) == ["sim-embed", "sim-small"]
    client.chat.completions.create(model="sim-small", **CHAT)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="sim-claude", **CHAT)
    assert caught.value.code == "model_not_allowed"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("sim-claude")
    assert gateway.upstream_requests()[-1]["json"]["model"] == "sim-small"  # type: ignore[index]


def test_several_groups_grant_the_union_of_their_models(gateway: Gateway) -> None:
    _, secret = _issue_with_cli(
        gateway, "--user", _user(), "--group", "contractors", "--group", "finance"
    )
    models = sorted(m.id for m in _client(gateway, secret).models.list())
    assert models == ["sim-claude", "sim-embed", "sim-routed", "sim-small"]


def test_a_key_limited_to_some_models_cannot_use_others(gateway: Gateway) -> None:
    _, secret = _issue_with_cli(gateway, "--user", _user(), "--models", "sim-small")
    client = _client(gateway, secret)
    client.chat.completions.create(model="sim-small", **CHAT)
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="sim-pair", **CHAT)


def test_the_anthropic_route_takes_an_issued_key_as_x_api_key(gateway: Gateway) -> None:
    import anthropic

    _, secret = _issue_with_cli(gateway, "--user", _user())
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=secret, max_retries=0)
    message = client.messages.create(
        model="sim-small", max_tokens=50, messages=[{"role": "user", "content": "hi"}]
    )
    assert message.content


def test_routing_conditions_follow_the_callers_groups(gateway: Gateway) -> None:
    _, finance = _issue_with_cli(gateway, "--user", _user(), "--group", "finance")
    _, other = _issue_with_cli(gateway, "--user", _user())
    routes = {}
    for name, secret in (("finance", finance), ("other", other)):
        raw = _client(gateway, secret).chat.completions.with_raw_response.create(
            model="sim-routed", **CHAT
        )
        routes[name] = raw.headers["x-raygate-route"]
    assert routes == {"finance": "simulator/sim-finance", "other": "simulator/sim-shared"}


def test_the_admin_routing_route_shows_breaker_state(gateway: Gateway) -> None:
    with _admin(gateway) as admin:
        status = admin.get("/admin/routing")
        assert status.status_code == 200, status.text
        assert "sim-routed" in str(status.json())
        assert admin.get("/admin/routing", headers={"authorization": "Bearer x"}).status_code == 401
