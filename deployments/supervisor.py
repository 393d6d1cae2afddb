"""Keeps one child process running for `raygate up`: the built-in upstream simulator.

    python -m deployments.supervisor --pidfile FILE -- COMMAND...

The child is restarted when it exits without being asked to (with a growing pause, capped,
so a child that cannot start does not spin), and each restart is logged. SIGTERM or SIGINT
stops the child and then the supervisor. `raygate down` signals the whole session, so both
go. The child's current pid is kept in `--pidfile` (for `raygate down` and for tests).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

_MAX_PAUSE_S = 30.0
_STABLE_S = 30.0  # a child that ran this long was working: its next restart is quick


def supervise(command: list[str], pidfile: Path | None, stop: threading.Event) -> int:
    """Run `command` until `stop` is set; return how many times it was restarted."""
    restarts = failures = 0
    while not stop.is_set():
        started = time.monotonic()
        child = subprocess.Popen(command)
        if pidfile is not None:
            pidfile.write_text(f"{child.pid}\n")
        while child.poll() is None:
            if stop.wait(0.2):
                child.terminate()
                child.wait()
                return restarts
        if stop.is_set():
            break
        restarts += 1
        # Pauses grow while the child keeps failing at once; one that ran a while starts over.
        failures = failures + 1 if time.monotonic() - started < _STABLE_S else 1
        pause = min(0.5 * 2 ** (failures - 1), _MAX_PAUSE_S)
        print(
            f"supervisor: {command[-1] if command else 'child'} exited with status "
            f"{child.returncode}; restarting in {pause:g}s",
            file=sys.stderr,
            flush=True,
        )
        stop.wait(pause)
    return restarts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pidfile", type=Path, help="where the child's current pid is kept")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    supervise(command, args.pidfile, stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
