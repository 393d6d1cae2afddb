"""Provider keys at run time through the running gateway: an admin switches a keyless
provider on with `PUT /admin/providers/{name}/key` (every replica within
`routing.key_sync_interval_s`), nobody else may, the key is never shown or recorded, and
removing it switches the provider off again."""

from __future__ import annotations

import time

import httpx

from tests.security.conftest import Target

DEADLINE_S = 30.0
LATE_KEY = "sk-late-provider-9876"


def answered_with(target: Target, status: int) -> httpx.Response:
    """Ask `late-small` until the answer has `status` (the replicas read the keys within the
    sync interval); fails after DEADLINE_S."""
    body = {"model": "late-small", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {target.dev_key}"}
    deadline = time.monotonic() + DEADLINE_S
    while True:
        response = httpx.post(f"{target.v1}/chat/completions", json=body, headers=headers)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response


def test_an_admin_switches_a_provider_on_and_off_with_a_key(target: Target) -> None:
    key_manager = target.issue(admin_role="key_manager")
    with target.admin(key_manager.secret) as admin:
        refused = admin.put("/admin/providers/late/key", json={"api_key": LATE_KEY})
    assert refused.status_code == 403, refused.text
    with target.admin() as admin:
        providers = {p["name"]: p for p in admin.get("/admin/providers").json()["providers"]}
        assert not providers["late"]["enabled"]
        answered_with(target, 404)

        put = admin.put("/admin/providers/late/key", json={"api_key": LATE_KEY})
        assert put.status_code == 200, put.text
        assert put.json()["key"]["hint"] == "...9876" and LATE_KEY not in put.text
        answered_with(target, 200)
        providers = {p["name"]: p for p in admin.get("/admin/providers").json()["providers"]}
        assert providers["late"]["enabled"] and LATE_KEY not in repr(providers)

        assert admin.delete("/admin/providers/late/key").status_code == 200
        answered_with(target, 404)

    record = target.record(put.headers["x-raygate-request-id"])
    assert record["admin_action"] == "providers.set_key"
    assert record["admin_target"] == "provider:late"
    assert LATE_KEY not in repr(record)
    stored = [target.database, target.database.with_name(target.database.name + "-wal")]
    assert not any(LATE_KEY.encode() in f.read_bytes() for f in stored if f.exists())  # sealed
