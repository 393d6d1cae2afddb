"""What `raygate up` started stays up: a simulator that dies is restarted and the gateway
answers through it again. (This module runs after the others: the restarted simulator has
forgotten the requests and faults of the tests before it.)"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.e2e.conftest import Gateway


def test_a_simulator_that_dies_is_restarted_and_answers_again(gateway: Gateway) -> None:
    pidfile = Path(gateway.env["RAYGATE_STATE_DIR"]) / "simulator.pid"
    dead = int(pidfile.read_text())
    os.kill(dead, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:  # a new simulator: a new pid, listening
        restarted = int(pidfile.read_text()) != dead
        if restarted and _answers(f"{gateway.simulator_url}/healthz"):
            break
        assert time.monotonic() < deadline, "the simulator was not restarted"
        time.sleep(0.1)  # poll interval
    response = httpx.post(
        f"{gateway.v1}/chat/completions",
        json={"model": "sim-small", "messages": [{"role": "user", "content": "still there?"}]},
        headers={"authorization": f"Bearer {gateway.api_key}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
