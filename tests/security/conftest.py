"""The attack suite's gateway: one `raygate up` for the package, hardened as an operator runs
it (tests/security/gateway.yaml), with the upstream simulator and a scripted upstream behind
it. Attacks go in through the official SDKs and raw HTTP; what reached an upstream is read
from their request logs, and what was recorded from the admin API and the database file."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.security.scripted import ScriptedUpstream, create_app
from tests.support import running_gateway
from tests.support.simulator import serve

CONFIG = Path(__file__).with_name("gateway.yaml")
RAYGATE = str(Path(sys.executable).with_name("raygate"))
RECORD_DEADLINE_S = 20.0


@dataclass(frozen=True)
class Issued:
    """An issued key: its id, its secret and its owner."""

    key_id: str
    secret: str
    user: str


@dataclass(frozen=True)
class Target:
    """The running gateway under attack, its upstreams, and ways in."""

    base_url: str
    simulator_url: str
    scripted: ScriptedUpstream
    admin_key: str
    env: dict[str, str] = field(hash=False)
    dev_key: str = "sk-raygate-dev"

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def database(self) -> Path:
        return Path(self.env["RAYGATE_STATE_DIR"]) / "raygate.db"

    def admin(self, key: str | None = None) -> httpx.Client:
        """An HTTP client of the admin API with `key` (default: the break-glass admin key)."""
        return httpx.Client(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {key or self.admin_key}"},
            timeout=30,
        )

    def issue(self, *groups: str, admin_role: str | None = None, user: str = "") -> Issued:
        """A key issued through the admin API to a fresh user in `groups`."""
        user = user or f"{(groups or ('caller',))[0]}-{uuid.uuid4().hex[:8]}"
        body: dict[str, Any] = {"user": user, "groups": list(groups) or None}
        if admin_role is not None:
            body["admin_role"] = admin_role
        with self.admin() as admin:
            response = admin.post("/admin/keys", json=body)
        assert response.status_code == 201, response.text
        issued = response.json()
        return Issued(issued["key"]["id"], issued["secret"], user)

    def openai(self, key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.v1, api_key=key, max_retries=0, timeout=60)

    def anthropic(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.base_url, api_key=key, max_retries=0, timeout=60)

    def upstream_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the model requests the simulator received, oldest first."""
        received = httpx.get(f"{self.simulator_url}/_sim/requests").json()["requests"]
        return [r["json"] for r in received if r.get("json")]

    def everything_upstream(self) -> str:
        """Every byte of JSON either upstream received, as one string to search."""
        return repr(self.upstream_bodies()) + repr(self.scripted.bodies())

    def record(self, request_id: str) -> dict[str, Any]:
        """The audit record of `request_id`, once the writer committed it (records are
        written off the request path); fails after RECORD_DEADLINE_S."""
        deadline = time.monotonic() + RECORD_DEADLINE_S
        with self.admin() as admin:
            while time.monotonic() < deadline:
                page = admin.get("/admin/audit/records", params={"limit": 200})
                assert page.status_code == 200, page.text
                for record in page.json()["records"]:
                    if record["request_id"] == request_id:
                        return dict(record)
                admin.get("/healthz")  # a round trip, then look again
        pytest.fail(f"no audit record of {request_id} within {RECORD_DEADLINE_S} s")

    def records_of(self, user: str, want: int) -> list[dict[str, Any]]:
        """`user`'s records (as actor or caller), newest first, once `want` are committed."""
        deadline = time.monotonic() + RECORD_DEADLINE_S
        with self.admin() as admin:
            while True:
                page = admin.get("/admin/audit/records", params={"user": user})
                assert page.status_code == 200, page.text
                records: list[dict[str, Any]] = page.json()["records"]
                if len(records) >= want or time.monotonic() > deadline:
                    return records
                admin.get("/healthz")

    def cli(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """`raygate ARGS` against this gateway's config and state (or `env`'s)."""
        return subprocess.run(
            [RAYGATE, *args], env=env or self.env, capture_output=True, text=True, timeout=60
        )


@pytest.fixture(scope="package")
def scripted() -> Iterator[ScriptedUpstream]:
    """The scripted upstream, on a loopback port of its own."""
    with serve(create_app()) as url:
        yield ScriptedUpstream(url)


@pytest.fixture(scope="package")
def target(
    tmp_path_factory: pytest.TempPathFactory, scripted: ScriptedUpstream
) -> Iterator[Target]:
    """`raygate up` with gateway.yaml, once for the package (torn down after its last test)."""
    state_dir = tmp_path_factory.mktemp("raygate-security")
    port = scripted.url.rsplit(":", 1)[1]
    env = {
        "RAYGATE_TEST_SCRIPTED_PORT": port,
        "RAYGATE_ADMIN_KEY": "rg-admin-" + secrets.token_urlsafe(24),
        "RAYGATE_KEY_SECRET": secrets.token_urlsafe(32),
        "RAYGATE_AUDIT_KEY": "chain1:" + secrets.token_urlsafe(32),
        "RAYGATE_DATA_KEY": "data1:" + secrets.token_urlsafe(32),
        # HAProxy holds a request until its body has come (raygate-haproxy): bounded here as
        # gateway.yaml bounds the gateway's own wait (limits.body_timeout_s).
        "RAYGATE_HAPROXY_REQUEST_TIMEOUT_S": "2",
    }
    with running_gateway(CONFIG, state_dir, env) as (base_url, run_env):
        yield Target(
            base_url=base_url,
            simulator_url=f"http://127.0.0.1:{run_env['RAYGATE_SIMULATOR_PORT']}",
            scripted=scripted,
            admin_key=env["RAYGATE_ADMIN_KEY"],
            env=run_env,
        )


@pytest.fixture(autouse=True)
def _clean_upstreams(request: pytest.FixtureRequest) -> None:
    """Each attack starts with empty upstream logs and nothing scripted."""
    if "target" not in request.fixturenames:
        return
    gw: Target = request.getfixturevalue("target")
    httpx.delete(f"{gw.simulator_url}/_sim/requests").raise_for_status()
    httpx.delete(f"{gw.simulator_url}/_sim/faults").raise_for_status()
    gw.scripted.reset()
