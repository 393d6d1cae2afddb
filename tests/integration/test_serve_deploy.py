"""`serve deploy cluster/serve-config.yaml` onto a Ray cluster started with `ray start --head`.

What an operator does, on loopback: a head node (whose environment carries the secrets, as
cluster/ray-cluster.yaml sets them), an upstream simulator standing in for a provider, and the
shipped Serve config with only the proxy's port moved to a free one.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from deployments.local import terminate_session
from tests.servers.ray_cluster import answers, wait_for
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN_KEY = "sk-test-admin-0123456789"


@dataclass(frozen=True)
class Cluster:
    base_url: str
    dashboard: str
    simulator_url: str
    env: dict[str, str]


def serve_status(cluster_env: dict[str, str], dashboard: str) -> dict[str, object]:
    out = subprocess.run(
        [str(BIN / "serve"), "status", "--address", dashboard],
        env=cluster_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(yaml.safe_load(out.stdout))


def _running(cluster_env: dict[str, str], dashboard: str) -> bool:
    app = serve_status(cluster_env, dashboard).get("applications", {}).get("raygate")  # type: ignore[union-attr]
    return bool(app) and app["status"] in ("RUNNING", "DEPLOY_FAILED")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    ports = {name: free_port() for name in ("gcs", "dash", "serve", "sim")}
    simulator_url = f"http://127.0.0.1:{ports['sim']}"
    env = {
        **os.environ,
        "RAYGATE_ADMIN_KEY": ADMIN_KEY,
        "RAYGATE_SIMULATOR_URL": f"{simulator_url}/v1",
        "RAYGATE_DATABASE_URL": f"sqlite:///{tmp}/raygate.db",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Token auth on, as a cluster should run; the serve CLI presents the same token.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    for secret in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "RAYGATE_DEV_KEY"):
        env.pop(secret, None)

    started: list[subprocess.Popen[bytes]] = []

    def spawn(command: list[str], log: str) -> None:
        with open(tmp / log, "wb") as out:
            started.append(
                subprocess.Popen(command, stdout=out, stderr=out, env=env, start_new_session=True)
            )

    spawn([str(BIN / "raygate"), "simulate", "--port", str(ports["sim"])], "simulator.log")
    ray_start = [str(BIN / "ray"), "start", "--head", "--block", f"--port={ports['gcs']}",
                 f"--dashboard-port={ports['dash']}", "--dashboard-host=127.0.0.1",
                 "--num-cpus=3", "--disable-usage-stats"]  # fmt: skip
    # Three logical CPUs: the shipped raygate.yaml reserves 2.5 (two replicas of each deployment).
    spawn(ray_start, "ray.log")
    dashboard = f"http://127.0.0.1:{ports['dash']}"
    try:
        wait_for(lambda: answers(f"{simulator_url}/healthz", 200), 30, "the simulator")
        wait_for(lambda: answers(f"{dashboard}/api/version", 401), 120, "Ray")

        config = yaml.safe_load((ROOT / "cluster" / "serve-config.yaml").read_text())
        config["http_options"].update(host="127.0.0.1", port=ports["serve"])
        config_path = tmp / "serve-config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        deploy = subprocess.run(
            [str(BIN / "serve"), "deploy", str(config_path), "--address", dashboard],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            timeout=120,
        )
        assert deploy.returncode == 0, deploy.stderr
        wait_for(lambda: _running(env, dashboard), 180, "the Serve application")
        yield Cluster(f"http://127.0.0.1:{ports['serve']}", dashboard, simulator_url, env)
    finally:
        for process in reversed(started):
            terminate_session(process.pid, grace_s=5)


def test_every_deployment_is_healthy(cluster: Cluster) -> None:
    app = serve_status(cluster.env, cluster.dashboard)["applications"]["raygate"]  # type: ignore[index]
    assert app["status"] == "RUNNING", app
    assert {name: d["status"] for name, d in app["deployments"].items()} == {
        "Ingress": "HEALTHY",  # the router runs inside it (serve.colocate_router)
        "Cache": "HEALTHY",
    }


def test_health_and_readiness_answer(cluster: Cluster) -> None:
    assert httpx.get(f"{cluster.base_url}/healthz").status_code == 200
    assert httpx.get(f"{cluster.base_url}/readyz").status_code == 200


def test_secrets_come_from_the_cluster_environment(cluster: Cluster) -> None:
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    response = httpx.get(f"{cluster.base_url}/admin/providers", headers=admin)
    assert response.status_code == 200, response.text
    providers = {p["name"]: p for p in response.json()["providers"]}
    assert providers["simulator"]["enabled"] is True
    assert providers["simulator"]["base_url"] == f"{cluster.simulator_url}/v1"
    assert providers["openai"]["enabled"] is False  # no key in the environment
    assert response.json()["models"]["sim-small"] == ["simulator/sim-small"]


def test_the_embedded_dev_key_does_not_open_a_cluster(cluster: Cluster) -> None:
    response = httpx.post(
        f"{cluster.base_url}/v1/chat/completions",
        headers={"authorization": "Bearer sk-raygate-dev"},
        json={"model": "sim-small", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"
    wrong_admin = httpx.get(
        f"{cluster.base_url}/admin/providers", headers={"authorization": "Bearer sk-raygate-admin"}
    )
    assert wrong_admin.status_code == 401
