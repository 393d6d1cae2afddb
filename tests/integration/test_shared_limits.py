"""Rate limits hold across ingress replicas when they share Redis: two Serve ingress replicas
behind one proxy, one limit between them."""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.servers.redis import RedisServer, redis_binary
from tests.support import running_gateway

E2E_CONFIG = Path(__file__).resolve().parents[1] / "e2e" / "gateway.yaml"
LIMIT = 5


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    binary = redis_binary()
    with (
        tempfile.TemporaryDirectory(prefix="raygate-redis-") as workdir,
        RedisServer.start(binary, Path(workdir)) as redis_server,
    ):
        config = yaml.safe_load(E2E_CONFIG.read_text())
        config["serve"]["ingress"] = {"num_cpus": 0.1, "num_replicas": 2}
        config["auth"].pop("oidc")
        config["rate_limits"] = {
            "per_user": {"rpm": LIMIT},
            "store": {"url": redis_server.url, "failure_mode": "closed"},
        }
        config_path = tmp_path_factory.mktemp("config") / "gateway.yaml"
        config_path.write_text(yaml.safe_dump(config))
        with running_gateway(config_path, tmp_path_factory.mktemp("state")) as running:
            yield running


def test_one_limit_holds_across_two_ingress_replicas(
    gateway: tuple[str, dict[str, str]],
) -> None:
    base_url, env = gateway
    raygate = str(Path(sys.executable).with_name("raygate"))
    issued = subprocess.run(
        [raygate, "keys", "issue", "--user", "shared-limit-user"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"secret: (rg-\S+)", issued.stdout)
    assert found
    headers = {"authorization": f"Bearer {found.group(1)}"}
    body = {"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]}
    statuses: list[int] = []
    replicas: set[str] = set()
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        # Sequential requests spread over both replicas (Serve picks one at random when both
        # are idle); 24 of them all landing on one replica would happen once in 8 million.
        for _ in range(24):
            response = client.post("/v1/chat/completions", json=body)
            statuses.append(response.status_code)
            replicas.add(response.headers["x-raygate-replica"])
    assert len(replicas) == 2, replicas
    # The bucket holds one minute's allowance: LIMIT at once, then refusals. Counted per
    # replica, twice as many would have got through.
    assert statuses.count(200) == LIMIT, statuses
    assert statuses.count(429) == len(statuses) - LIMIT
