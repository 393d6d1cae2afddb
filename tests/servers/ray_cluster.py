"""A Ray cluster of several raylets on this machine, with raygate `serve deploy`ed onto it.

    with RayCluster.start(workdir, env, workers={"worker-a": 2, "worker-b": 2}) as cluster:
        cluster.deploy(serve_config)
        cluster.wait_until(lambda s: s.running("Cache") >= 2, 120, "two cache replicas")
        cluster.kill_replica("Cache")

What an operator runs, on loopback: `ray start --head` with no CPUs of its own (it holds the
GCS, the dashboard and the Serve controller, as a KubeRay head does) and one `ray start
--address` per worker, each with its own `--num-cpus` and a custom resource named after it, so
every replica lands on a worker. Ray's token auth is on; the `serve` CLI and the control driver
present the same token. The environment given is every node's environment: the secrets
(RAYGATE_ADMIN_KEY, RAYGATE_DATABASE_URL, ...) come from there, as on a real cluster.

Faults go through a short-lived Ray driver (`python -m tests.servers.ray_control`), so the
process running the tests never joins the cluster: `ray.kill` one replica of a deployment, or
SIGKILL a whole worker raylet with everything it runs.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from deployments.local import terminate_session
from tests.support import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
APP = "raygate"


@dataclass(frozen=True)
class ServeStatus:
    """`serve status`, read: each deployment's status and replicas per state."""

    raw: dict[str, Any]

    @property
    def app(self) -> dict[str, Any]:
        return dict(self.raw.get("applications", {}).get(APP) or {})

    def deployment(self, name: str) -> dict[str, Any]:
        return dict(self.app.get("deployments", {}).get(name) or {})

    def running(self, name: str) -> int:
        return int(self.deployment(name).get("replica_states", {}).get("RUNNING", 0))

    def replicas(self, name: str) -> int:
        """Replicas in any state (starting, running, stopping)."""
        return sum(self.deployment(name).get("replica_states", {}).values())


class RayCluster:
    """A head with no CPUs and named workers; a context manager that stops every node."""

    def __init__(self, workdir: Path, env: Mapping[str, str]) -> None:
        self.workdir = workdir
        self.gcs_port, self.dashboard_port, self.serve_port = free_port(), free_port(), free_port()
        self.env = {
            **env,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
        }
        self.dashboard = f"http://127.0.0.1:{self.dashboard_port}"
        self.base_url = f"http://127.0.0.1:{self.serve_port}"
        self._head: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}

    @classmethod
    @contextmanager
    def start(
        cls, workdir: Path, env: Mapping[str, str], *, workers: Mapping[str, float]
    ) -> Iterator[RayCluster]:
        """The head and `workers` (name -> logical CPUs), running; every node stopped on exit."""
        cluster = cls(workdir, env)
        with cluster:
            cluster._start_head()
            for count, (name, cpus) in enumerate(workers.items(), start=2):
                cluster.add_worker(name, cpus)
                # One at a time: raylets starting together on two cores time out registering.
                cluster.wait_for_nodes(count)
            yield cluster

    def __enter__(self) -> RayCluster:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- nodes ---------------------------------------------------------------------------

    def _spawn(self, command: list[str], log: str) -> subprocess.Popen[bytes]:
        with open(self.workdir / log, "ab") as out:
            return subprocess.Popen(
                command, stdout=out, stderr=out, env=self.env, cwd=ROOT, start_new_session=True
            )

    def _start_head(self) -> None:
        self._head = self._spawn(
            [
                str(BIN / "ray"),
                "start",
                "--head",
                "--block",
                f"--port={self.gcs_port}",
                f"--dashboard-port={self.dashboard_port}",
                "--dashboard-host=127.0.0.1",
                "--num-cpus=0",
                "--disable-usage-stats",
            ],
            "head.log",
        )
        wait_for(lambda: answers(f"{self.dashboard}/api/version", 401), 120, "the Ray head")

    def add_worker(self, name: str, cpus: float) -> None:
        """A worker raylet with `cpus` logical CPUs and the custom resource `name`."""
        self.workers[name] = self._spawn(
            [
                str(BIN / "ray"),
                "start",
                "--block",
                f"--address=127.0.0.1:{self.gcs_port}",
                f"--num-cpus={cpus:g}",
                f"--resources={json.dumps({name: 1})}",
                "--disable-usage-stats",
            ],
            f"{name}.log",
        )

    def kill_worker(self, name: str) -> None:
        """SIGKILL a worker raylet and everything it runs, as a node that loses power."""
        process = self.workers.pop(name)
        terminate_session(process.pid, grace_s=0)

    def wait_for_nodes(self, count: int, timeout_s: float = 120) -> None:
        wait_for(lambda: len(self.alive_nodes()) >= count, timeout_s, f"{count} Ray nodes")

    def alive_nodes(self) -> list[dict[str, Any]]:
        nodes = self.control("nodes")
        return [n for n in nodes if n["alive"]]

    def stop(self) -> None:
        for process in [*self.workers.values(), self._head]:
            if process is not None:
                terminate_session(process.pid, grace_s=5)
        self.workers.clear()
        self._head = None

    # --- Serve ---------------------------------------------------------------------------

    def deploy(self, serve_config: dict[str, Any]) -> None:
        """`serve deploy` of `serve_config` with the proxy on this cluster's Serve port."""
        self._serve("deploy", str(self.write_serve_config(serve_config)))

    def write_serve_config(self, serve_config: dict[str, Any]) -> Path:
        """`serve_config` with the proxy on this cluster's Serve port, as a file."""
        config = {**serve_config, "http_options": {**serve_config["http_options"]}}
        config["http_options"].update(host="127.0.0.1", port=self.serve_port)
        # One proxy, on the head: the nodes share one host, where only one HAProxy can listen
        # on the port (the others fail to bind and restart without end); a real cluster runs
        # one per node (the shipped EveryNode), with a load balancer in front.
        config["proxy_location"] = "HeadOnly"
        path = self.workdir / f"serve-config-{time.monotonic_ns()}.yaml"
        path.write_text(yaml.safe_dump(config))
        return path

    def status(self) -> ServeStatus:
        return ServeStatus(dict(yaml.safe_load(self._serve("status")) or {}))

    def wait_until(
        self, ready: Callable[[ServeStatus], bool], timeout_s: float, what: str
    ) -> ServeStatus:
        """The first `serve status` that satisfies `ready`; fails after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            status = self.status()
            if ready(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout_s:g}s; last status {status.raw}")
            time.sleep(0.5)

    def kill_replica(self, deployment: str) -> str:
        """`ray.kill` one running replica of `deployment`; returns the replica's actor name."""
        return str(self.control("kill-replica", deployment))

    def replicas(self, deployment: str) -> list[str]:
        """The actor names of `deployment`'s alive replicas."""
        return list(self.control("replicas", deployment))

    def placement(self) -> dict[str, list[str]]:
        """Deployment -> the custom resource (worker name) of the node each replica runs on."""
        return dict(self.control("placement"))

    def control(self, *args: str) -> Any:
        """The JSON a `tests.servers.ray_control` command prints."""
        out = self.run(sys.executable, "-m", "tests.servers.ray_control",
                       f"127.0.0.1:{self.gcs_port}", *args)  # fmt: skip
        return json.loads(out.strip().splitlines()[-1])

    def _serve(self, *args: str) -> str:
        return self.run(str(BIN / "serve"), *args, "--address", self.dashboard)

    def run(self, *command: str) -> str:
        """`command`'s output, run with the cluster's environment (its token, its secrets);
        a RuntimeError with its output when it fails."""
        out = subprocess.run(
            command, env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        if out.returncode != 0:
            raise RuntimeError(f"{command[:3]} failed:\n{out.stdout}\n{out.stderr[-3000:]}")
        return out.stdout

    def logs(self, tail: int = 3000) -> str:
        return "".join(f"--- {p.name}\n{p.read_text()[-tail:]}" for p in self.workdir.glob("*.log"))


def wait_for(ready: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `ready` until it holds; an AssertionError naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready within {timeout_s:g}s")
        time.sleep(0.5)


def answers(url: str, *statuses: int) -> bool:
    """Whether `url` answers a GET with one of `statuses`."""
    try:
        return httpx.get(url, timeout=2).status_code in statuses
    except httpx.HTTPError:
        return False


def shipped_serve_config(config_path: Path) -> dict[str, Any]:
    """cluster/serve-config.yaml with the app's raygate config at `config_path`."""
    config = yaml.safe_load((ROOT / "cluster" / "serve-config.yaml").read_text())
    (app,) = config["applications"]
    app["args"] = {**app["args"], "config": str(config_path)}
    return dict(config)
