"""One gateway for the tests of this package, started the way the README starts it (`raygate
up`). Package-scoped (as its servers are), so that it stops when `tests/e2e` is done instead of
loading the two cores through the rest of the session."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.servers.mcp_upstream import HttpUpstream, serve_http
from tests.servers.oidc_issuer import OidcIssuer
from tests.servers.prometheus import PrometheusServer, prometheus_binary
from tests.servers.slapd import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd
from tests.support import optional_binary, running_gateway
from tests.support.a2a_agent import EchoAgent, running_agent
from tests.unit.providers.cloud_support import (
    AWS_KEY_ID,
    AWS_SECRET,
    AZURE_CLIENT_ID,
    AZURE_CLIENT_SECRET,
    AZURE_TENANT,
    PROJECT,
    cloud_settings,
    cloud_sim,
    service_account,
)

CONFIG = Path(__file__).with_name("gateway.yaml")
RAYGATE = str(Path(sys.executable).with_name("raygate"))


@dataclass(frozen=True)
class Gateway:
    """A running gateway and the simulator behind it."""

    base_url: str
    simulator_url: str
    api_key: str = "sk-raygate-dev"
    admin_key: str = "sk-raygate-admin"
    env: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def inject(self, **fault: object) -> None:
        """Queue a fault in the simulator (see gateway.simulator.faults)."""
        httpx.post(f"{self.simulator_url}/_sim/faults", json={"faults": [fault]}).raise_for_status()

    def upstream_requests(self) -> list[dict[str, object]]:
        """What the simulator received, oldest first."""
        response = httpx.get(f"{self.simulator_url}/_sim/requests")
        return list(response.json()["requests"])

    def simulator_stats(self) -> dict[str, object]:
        return dict(httpx.get(f"{self.simulator_url}/_sim/stats").json())

    @property
    def policy_file(self) -> Path:
        """The policy file the running gateway re-reads when it changes."""
        return Path(self.env["RAYGATE_CONFIG"]).with_name("policy.yaml")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`raygate ARGS` against this gateway's config and state."""
        return subprocess.run(
            [RAYGATE, *args], env=self.env, capture_output=True, text=True, timeout=60
        )

    def issue_key(self, user: str, *extra: str) -> str:
        """The secret of a key issued to `user` with `raygate keys issue` (`extra`: its flags)."""
        result = self.cli("keys", "issue", "--user", user, *extra)
        assert result.returncode == 0, result.stderr
        found = re.search(r"secret: (rg-\S+)", result.stdout)
        assert found, result.stdout
        return found.group(1)

    def audit_records(self, want: int, **filters: str) -> list[dict[str, Any]]:
        """The audit records `filters` select, once `want` of them are committed (the writer
        batches them off the request path), or what there is after 15 s."""
        deadline = time.monotonic() + 15
        admin = {"authorization": f"Bearer {self.admin_key}"}
        with httpx.Client(base_url=self.base_url, headers=admin) as client:
            while True:
                page = client.get("/admin/audit/records", params=filters)
                assert page.status_code == 200, page.text
                records: list[dict[str, Any]] = page.json()["records"]
                if len(records) >= want or time.monotonic() > deadline:
                    return records
                client.get("/healthz")  # a round trip, then look again


@dataclass(frozen=True)
class Clouds:
    """The cloud simulator's URL and the service-account file its token endpoint honours."""

    url: str
    sa_file: Path

    def providers(self) -> dict[str, object]:
        """The cloud providers, as an operator would configure them, at the simulator."""
        gcp = {"project": PROJECT, "credentials_file": str(self.sa_file)}
        aws = {"region": "us-east-1", "access_key_id": AWS_KEY_ID, "secret_access_key": AWS_SECRET}
        entra = {
            "tenant_id": AZURE_TENANT,
            "client_id": AZURE_CLIENT_ID,
            "client_secret": AZURE_CLIENT_SECRET,
            "authority_host": self.url,
        }
        return {
            "bedrock": {"preset": "bedrock", "base_url": self.url, "aws": aws},
            "vertex": {
                "preset": "vertex",
                "base_url": self.url,
                "gcp": {**gcp, "location": "europe-west4"},
            },
            "claude-vertex": {
                "preset": "vertex-anthropic",
                "base_url": self.url,
                "gcp": {**gcp, "location": "us-east5"},
            },
            "azure": {"preset": "azure", "base_url": self.url, "azure_ad": entra},
            "cohere": {"preset": "cohere", "base_url": self.url, "api_key": "sk-cloud"},
        }


CLOUD_MODELS = {
    "cloud-nova": {"targets": ["bedrock/amazon.nova-pro-v1:0"]},
    "cloud-titan": {"targets": ["bedrock/amazon.titan-embed-text-v2:0"]},
    "cloud-gemini": {"targets": ["vertex/gemini-2.0-flash"]},
    "cloud-claude": {"targets": ["claude-vertex/claude-sonnet-4@20250514"]},
    "cloud-gpt": {"targets": ["azure/gpt4o-prod"]},
    "cloud-command": {"targets": ["cohere/command-a-03-2025"]},
    "cloud-embed": {"targets": ["cohere/embed-v4.0"]},
}
"""Aliases of the cloud providers' models (their simulator answers any model name)."""


@pytest.fixture(scope="package")
def oidc_issuer() -> Iterator[OidcIssuer]:
    """A real OIDC issuer on loopback that the gateway trusts (see gateway.yaml)."""
    with OidcIssuer(audience="raygate") as issuer:
        yield issuer


@pytest.fixture(scope="package")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd | None]:
    """A real OpenLDAP directory seeded with people and nested groups, when slapd is here."""
    binary = optional_binary("slapd", "/usr/sbin/slapd")
    if binary is None:
        yield None
        return
    with Slapd(binary, tmp_path_factory.mktemp("slapd")) as slapd:
        yield slapd


@pytest.fixture(scope="package")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clouds]:
    """The simulator speaking the clouds' formats (Bedrock with SigV4, Vertex AI with a
    service account's tokens, Azure OpenAI with Entra ID, Cohere) on its own loopback port."""
    account = service_account()
    with cloud_sim(cloud_settings(account, api_key="sk-cloud")) as (_, url):
        sa_file = account.write(tmp_path_factory.mktemp("gcp") / "sa.json", f"{url}/token")
        yield Clouds(url, sa_file)


def _config(tmp: Path, directory: Slapd | None, clouds: Clouds) -> Path:
    """gateway.yaml, with `auth.ldap` pointing at the test directory when there is one, and
    the cloud providers at the cloud simulator."""
    data = yaml.safe_load(CONFIG.read_text())
    data["providers"].update(clouds.providers())
    data["models"].update(CLOUD_MODELS)
    if directory is not None:
        data["auth"]["ldap"] = {
            "url": directory.url,
            "bind_dn": SERVICE_DN,
            "bind_password": SERVICE_PASSWORD,
            "user_search_base": PEOPLE,
            "group_search_base": GROUPS,
        }
    # The policy lives in its own file, which the gateway re-reads when it changes.
    policy_file = tmp / "policy.yaml"
    policy_file.write_text(yaml.safe_dump({"policy": data["policy"]}))
    data["policy"] = {"file": str(policy_file)}
    path = tmp / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="package")
def a2a_agent() -> Iterator[EchoAgent]:
    """A real A2A agent (`a2a-sdk`'s server) on loopback, the gateway's agent `echo`."""
    with running_agent() as agent:
        yield agent


@pytest.fixture(scope="package")
def mcp_upstream() -> Iterator[HttpUpstream]:
    """A real MCP server on loopback, behind the gateway's `/mcp/tools` (see gateway.yaml)."""
    with serve_http("docs") as upstream:
        yield upstream


@pytest.fixture(scope="package")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    oidc_issuer: OidcIssuer,
    directory: Slapd | None,
    clouds: Clouds,
    a2a_agent: EchoAgent,
    mcp_upstream: HttpUpstream,
) -> Iterator[Gateway]:
    state_dir = tmp_path_factory.mktemp("raygate-state")
    config = _config(tmp_path_factory.mktemp("config"), directory, clouds)
    env = {
        "RAYGATE_TEST_OIDC_ISSUER": oidc_issuer.url,
        "RAYGATE_TEST_A2A_AGENT": a2a_agent.url,
        "RAYGATE_TEST_MCP_URL": mcp_upstream.url,
        # Ray's agent exports every second (default 10 s): the Prometheus tests wait less.
        "RAY_metrics_report_interval_ms": "1000",
    }
    with running_gateway(config, state_dir, env) as (base_url, env):
        yield Gateway(
            base_url=base_url,
            simulator_url=f"http://127.0.0.1:{env['RAYGATE_SIMULATOR_PORT']}",
            env=env,
        )


@pytest.fixture(scope="package")
def prometheus(
    gateway: Gateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the gateway's Ray metrics agent every second."""
    binary = prometheus_binary()
    target = f"127.0.0.1:{gateway.env['RAYGATE_METRICS_PORT']}"
    with PrometheusServer.start(binary, tmp_path_factory.mktemp("prometheus"), [target]) as prom:
        yield prom


@pytest.fixture(autouse=True)
def _clean_simulator(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with no pending faults and an empty request log."""
    if "gateway" not in request.fixturenames:
        yield
        return
    gw: Gateway = request.getfixturevalue("gateway")
    httpx.delete(f"{gw.simulator_url}/_sim/faults")
    httpx.delete(f"{gw.simulator_url}/_sim/requests")
    yield
    httpx.delete(f"{gw.simulator_url}/_sim/faults")
