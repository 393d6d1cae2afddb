"""Admin roles on every admin route of the running gateway, and every admin request (refused
ones included) in the audit trail with its actor. Attacks by colleagues: an auditor reaching
for keys, a key manager minting an administrator, callers trying admin routes and paths that
do not exist."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.security.conftest import Target


def test_an_auditor_reads_the_trail_and_nothing_else(target: Target) -> None:
    auditor = target.issue(admin_role="auditor")
    victim = target.issue()
    with target.admin(auditor.secret) as admin:
        assert admin.get("/admin/audit/records").status_code == 200
        refused = [
            admin.post("/admin/keys", json={"user": "auditor-made"}),
            admin.delete(f"/admin/keys/{victim.key_id}"),
            admin.post(f"/admin/keys/{victim.key_id}/rotate"),
            admin.post("/admin/cache/invalidate", json={"model": "cached-small"}),
        ]
    for response in refused:
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "insufficient_admin_role"
    target.openai(victim.secret).models.list()  # still valid: the revocation did not happen


def test_an_admin_key_opens_no_model(target: Target) -> None:
    """An issued admin key is for the admin routes only: it cannot be used to call models
    (under nobody's policy profile)."""
    auditor = target.issue(admin_role="auditor")
    with pytest.raises((openai.AuthenticationError, openai.PermissionDeniedError)):
        target.openai(auditor.secret).chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "hi"}]
        )
    assert target.upstream_bodies() == []


@pytest.mark.parametrize("role", ["admin", "auditor", "key_manager"])
def test_a_key_manager_cannot_mint_an_admin_key(target: Target, role: str) -> None:
    manager = target.issue(admin_role="key_manager")
    user = f"would-be-{role}"
    with target.admin(manager.secret) as admin:
        refused = admin.post("/admin/keys", json={"user": user, "admin_role": role})
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "insufficient_admin_role"
    with target.admin() as admin:
        assert admin.get("/admin/keys", params={"user": user}).json()["data"] == []


def test_a_key_manager_cannot_make_an_admin_by_naming_an_admin_group(target: Target) -> None:
    """Admin roles come from the directory, never from what a key's issuer wrote about its
    owner: a key issued to a user 'in' gateway-admins opens no admin route."""
    manager = target.issue(admin_role="key_manager")
    with target.admin(manager.secret) as admin:
        issued = admin.post(
            "/admin/keys", json={"user": "mallory-admin", "groups": ["gateway-admins"]}
        )
        assert issued.status_code == 201, issued.text
    with target.admin(issued.json()["secret"]) as mallory:
        for path in ("/admin/audit/records", "/admin/keys", "/admin/routing"):
            assert mallory.get(path).status_code in (401, 403)


def test_a_key_manager_cannot_revoke_or_rotate_an_admin_key(target: Target) -> None:
    manager = target.issue(admin_role="key_manager")
    auditor = target.issue(admin_role="auditor")
    with target.admin(manager.secret) as admin:
        assert admin.delete(f"/admin/keys/{auditor.key_id}").status_code == 403
        assert admin.post(f"/admin/keys/{auditor.key_id}/rotate").status_code == 403
        assert admin.get("/admin/audit/records").status_code == 403
        ordinary = admin.post("/admin/keys", json={"user": "new-hire"})
        assert ordinary.status_code == 201  # what key managers are for
    with target.admin(auditor.secret) as admin:
        assert admin.get("/admin/audit/records").status_code == 200  # untouched


@pytest.mark.parametrize("who", ["none", "dev-key", "issued-key", "bad-admin-key"])
def test_callers_without_an_admin_credential_are_refused_on_every_admin_route(
    target: Target, who: str
) -> None:
    headers = {
        "none": {},
        "dev-key": {"authorization": f"Bearer {target.dev_key}"},
        "issued-key": {"authorization": f"Bearer {target.issue('gateway-admins').secret}"},
        "bad-admin-key": {"authorization": f"Bearer {target.admin_key}x"},
    }[who]
    routes = [
        ("GET", "/admin/audit/records"),
        ("GET", "/admin/audit/export"),
        ("GET", "/admin/audit/timeseries"),
        ("GET", "/admin/whoami"),
        ("POST", "/admin/audit/verify"),
        ("GET", "/admin/keys"),
        ("POST", "/admin/keys"),
        ("GET", "/admin/users"),
        ("GET", "/admin/routing"),
        ("GET", "/admin/routing/replicas"),
        ("GET", "/admin/providers"),
        ("POST", "/admin/policy/check"),
        ("POST", "/admin/cache/invalidate"),
        ("GET", "/admin/cache/entries"),
        ("GET", "/admin/openapi.json"),
    ]
    with httpx.Client(base_url=target.base_url, headers=headers) as client:
        for method, path in routes:
            response = client.request(method, path, json={})
            assert response.status_code in (401, 403), (method, path, response.text)
            assert response.json()["error"]["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/admin/secrets",
        "/admin/keys/../audit/records",
        "/admin//keys",
        "/ADMIN/keys",
        "/admin/keys%2F..%2Faudit%2Frecords",
        "/admin/audit/records/",
        "/v1/../admin/keys",
    ],
)
def test_an_unknown_or_disguised_admin_path_reveals_nothing(target: Target, path: str) -> None:
    """Without credentials, no spelling of a path reaches an admin route's data; with the
    admin key, a route that does not exist is a 404 in the error shape."""
    stranger = httpx.get(f"{target.base_url}{path}", follow_redirects=True)
    assert stranger.status_code in (401, 403, 404), stranger.text
    assert "error" in stranger.json() and "data" not in stranger.json()
    if path == "/admin/secrets":
        with target.admin() as admin:
            missing = admin.get(path)
        assert missing.status_code == 404
        assert missing.json()["error"]["message"]


def test_admin_actions_are_recorded_with_their_actor_refused_ones_included(
    target: Target,
) -> None:
    manager = target.issue(admin_role="key_manager")
    with target.admin(manager.secret) as admin:
        assert (
            admin.post("/admin/keys", json={"user": "x", "admin_role": "admin"}).status_code == 403
        )
        issued = admin.post("/admin/keys", json={"user": "new-colleague"})
        assert issued.status_code == 201
    records = target.records_of(manager.user, want=2)
    actions = {(r["admin_action"], r["status"]) for r in records}
    assert {("admin_keys.issue", 403), ("keys.issue", 201)} <= actions
    for record in records:
        assert record["principal"]["user_id"] == manager.user
        assert record["principal"]["roles"] == ["key_manager"]
        assert record["principal"]["key_id"] == manager.key_id
    (made,) = [r for r in records if r["status"] == 201]
    assert made["admin_target"] == f"key:{issued.json()['key']['id']}"
