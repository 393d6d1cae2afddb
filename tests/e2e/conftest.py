"""One gateway per test session, started the way the README starts it (`raygate up`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.servers.oidc_issuer import OidcIssuer
from tests.servers.slapd import GROUPS, PEOPLE, SERVICE_DN, SERVICE_PASSWORD, Slapd
from tests.support import optional_binary, running_gateway

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


@pytest.fixture(scope="session")
def oidc_issuer() -> Iterator[OidcIssuer]:
    """A real OIDC issuer on loopback that the gateway trusts (see gateway.yaml)."""
    with OidcIssuer(audience="raygate") as issuer:
        yield issuer


@pytest.fixture(scope="session")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd | None]:
    """A real OpenLDAP directory seeded with people and nested groups, when slapd is here."""
    binary = optional_binary("slapd", "/usr/sbin/slapd")
    if binary is None:
        yield None
        return
    with Slapd(binary, tmp_path_factory.mktemp("slapd")) as slapd:
        yield slapd


def _config(tmp: Path, directory: Slapd | None) -> Path:
    """gateway.yaml, with `auth.ldap` pointing at the test directory when there is one."""
    data = yaml.safe_load(CONFIG.read_text())
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


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    oidc_issuer: OidcIssuer,
    directory: Slapd | None,
) -> Iterator[Gateway]:
    state_dir = tmp_path_factory.mktemp("raygate-state")
    config = _config(tmp_path_factory.mktemp("config"), directory)
    issuer = {"RAYGATE_TEST_OIDC_ISSUER": oidc_issuer.url}
    with running_gateway(config, state_dir, issuer) as (base_url, env):
        yield Gateway(
            base_url=base_url,
            simulator_url=f"http://127.0.0.1:{env['RAYGATE_SIMULATOR_PORT']}",
            env=env,
        )


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
