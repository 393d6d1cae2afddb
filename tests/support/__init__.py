"""Helpers shared by the test suites that start real processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, *candidates: str) -> str:
    """The path of a system binary a test needs, found on PATH or at one of `candidates`.

    Missing, the test skips with the reason, except under RAYGATE_REQUIRE_SYSTEM_SERVICES=1
    (set by .ci/run, which installs them), where it fails: CI must run every such test.
    """
    found = _find_binary(name, candidates)
    if found:
        return found
    reason = f"{name} is not installed (CI installs it from Debian's packages in .ci/run)"
    if os.environ.get("RAYGATE_REQUIRE_SYSTEM_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def optional_binary(name: str, *candidates: str) -> str | None:
    """Like `require_binary`, for a fixture that can run without it: None when missing
    (the tests that need it skip), a failure under RAYGATE_REQUIRE_SYSTEM_SERVICES=1."""
    found = _find_binary(name, candidates)
    if found is None and os.environ.get("RAYGATE_REQUIRE_SYSTEM_SERVICES") == "1":
        pytest.fail(f"{name} is not installed (.ci/run installs it from Debian's packages)")
    return found


@contextmanager
def running_gateway(
    config: Path, state_dir: Path, env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """`raygate up --detach` with `config` on free ports, as the README starts it; yields the
    base URL and the environment it ran with (for `raygate` CLI calls), and runs `raygate down`
    on exit. The config reads its ports from RAYGATE_PORT, RAYGATE_SIMULATOR_PORT, ..."""
    raygate = str(Path(sys.executable).with_name("raygate"))
    ports = {name: free_port() for name in ("port", "sim", "ray", "dash", "metrics", "closed")}
    run_env = {
        **os.environ,
        **(env or {}),
        "RAYGATE_PORT": str(ports["port"]),
        "RAYGATE_SIMULATOR_PORT": str(ports["sim"]),
        "RAYGATE_CLOSED_PORT": str(ports["closed"]),
        "RAYGATE_RAY_PORT": str(ports["ray"]),
        "RAYGATE_DASHBOARD_PORT": str(ports["dash"]),
        "RAYGATE_METRICS_PORT": str(ports["metrics"]),
        "RAYGATE_STATE_DIR": str(state_dir),
        "RAYGATE_CONFIG": str(config),
    }
    started = subprocess.run(
        [raygate, "up", "--detach", "--config", str(config)],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        if started.returncode != 0:
            logs = "".join(p.read_text()[-3000:] for p in state_dir.glob("*.log"))
            pytest.fail(f"raygate up failed:\n{started.stdout}\n{started.stderr}\n{logs}")
        yield f"http://127.0.0.1:{ports['port']}", run_env
    finally:
        subprocess.run([raygate, "down"], env=run_env, timeout=180)


def _find_binary(name: str, candidates: tuple[str, ...]) -> str | None:
    return shutil.which(name) or next((c for c in candidates if os.access(c, os.X_OK)), None)
