"""LDAP through the whole gateway: HTTP Basic with directory passwords, keys whose owners are
resolved in the directory, nested groups driving access, and filter injection refused."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import httpx
import openai
import pytest

from tests.e2e.conftest import Gateway
from tests.servers.slapd import ALICE, BOB, Slapd

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def ldap(directory: Slapd | None) -> Slapd:
    if directory is None:
        pytest.skip("slapd is not installed (CI installs it in .ci/run)")
    return directory


def _basic(username: str, password: str) -> openai.OpenAI:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return openai.OpenAI(
        base_url="http://placeholder/v1",  # replaced per test
        api_key="unused",
        default_headers={"Authorization": f"Basic {token}"},
        max_retries=0,
    )


def _client(gateway: Gateway, username: str, password: str) -> openai.OpenAI:
    return _basic(username, password).with_options(base_url=gateway.v1)


def _latest_record(gateway: Gateway, user: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        records = httpx.get(
            f"{gateway.base_url}/admin/audit/records",
            params={"user": user, "limit": "1"},
            headers={"authorization": f"Bearer {gateway.admin_key}"},
        ).json()["records"]
        if records or time.monotonic() > deadline:
            assert records, f"no audit record for {user}"
            return dict(records[0])


def test_a_directory_user_signs_in_with_http_basic(gateway: Gateway, ldap: Slapd) -> None:
    client = _client(gateway, ALICE.uid, ALICE.password)
    assert client.chat.completions.create(model="sim-small", **CHAT).choices
    record = _latest_record(gateway, ALICE.uid)
    principal = record["principal"]
    assert principal["auth_method"] == "ldap"
    assert principal["email"] == ALICE.mail and principal["department"] == ALICE.department
    # alice is in ml-platform, which is itself in engineering: both count.
    assert {"ml-platform", "engineering"} <= set(principal["groups"])


def test_a_wrong_password_is_refused(gateway: Gateway, ldap: Slapd) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(gateway, ALICE.uid, "not-her-password").models.list()


@pytest.mark.parametrize("username", ["*", "alice)(uid=*", "*)(|(uid=*", "al*"])
def test_filter_injection_in_the_username_signs_nobody_in(
    gateway: Gateway, ldap: Slapd, username: str
) -> None:
    for password in (ALICE.password, BOB.password, ""):
        with pytest.raises(openai.AuthenticationError):
            _client(gateway, username, password).models.list()


def test_a_key_owner_is_resolved_in_the_directory(gateway: Gateway, ldap: Slapd) -> None:
    issued = gateway.cli("keys", "issue", "--user", BOB.uid)
    assert issued.returncode == 0, issued.stderr
    found = re.search(r"secret: (rg-\S+)", issued.stdout)
    assert found
    client = openai.OpenAI(base_url=gateway.v1, api_key=found.group(1), max_retries=0)
    # bob is in the directory's finance group, which gateway.yaml limits to these models.
    assert sorted(m.id for m in client.models.list()) == ["sim-claude", "sim-routed", "sim-small"]
    principal = _latest_record(gateway, BOB.uid)["principal"]
    assert principal["auth_method"] == "api_key" and principal["department"] == BOB.department
