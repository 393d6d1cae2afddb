"""The supervisor `raygate up` runs the simulator under: a child that dies is restarted, and a
signal to the supervisor stops both. Real processes; waits are on files and exits, with
deadlines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import os, sys, time
runs = os.path.join(sys.argv[1], "runs")
with open(runs, "a") as f:
    f.write(f"{os.getpid()}\\n")
if len(open(runs).read().split()) == 1:
    sys.exit(3)  # the first run dies at once
time.sleep(3600)  # later runs live until stopped
"""


def _until(check, what: str, timeout_s: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # poll interval


def test_a_child_that_dies_is_restarted_and_a_signal_stops_both(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    pidfile = tmp_path / "child.pid"
    supervisor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "deployments.supervisor",
            "--pidfile",
            str(pidfile),
            "--",
            sys.executable,
            str(script),
            str(tmp_path),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    runs = tmp_path / "runs"
    _until(lambda: runs.exists() and len(runs.read_text().split()) == 2, "the restart")
    first, second = (int(pid) for pid in runs.read_text().split())
    _until(lambda: pidfile.exists() and int(pidfile.read_text()) == second, "the pid file")
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(timeout=30) == 0
    _, stderr = supervisor.communicate()
    assert "exited with status 3; restarting" in stderr
    assert first != second
    _until(lambda: not _running(second), "the child to stop")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
