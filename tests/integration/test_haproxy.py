"""raygate-haproxy (gateway/haproxy.py) in front of two replicas, the first of which dies
holding a request: HAProxy sends the request again to the second, and the client gets that
answer rather than a 502 or a closed connection. The client writes its headers and its body
separately, as httpx (and so the `openai` SDK) does; Ray's own HAProxy config could not
replay such a request (cluster/README.md, "Replica and node failures")."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

WRAPPER = str(Path(sys.executable).with_name("raygate-haproxy"))
DEADLINE_S = 30.0
ANSWER_S = 15.0

# A replica on loopback: prints its port, then reads one request at a time; it answers each
# with its argument, or with "hold", prints "holding" and never answers.
REPLICA = r"""
import re, socket, sys
answer = sys.argv[1]
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
while True:
    conn, _ = listener.accept()
    data = b""
    while True:
        while b"\r\n\r\n" not in data and (chunk := conn.recv(65536)):
            data += chunk
        if b"\r\n\r\n" not in data:
            break
        head, _, data = data.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while len(data) < length:
            data += conn.recv(65536)
        data = data[length:]
        if answer == "hold":
            print("holding", flush=True)
            conn.recv(1)
            break
        body = answer.encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
"""

# Ray's retry settings as the manifests set them (cluster/rayservice.yaml) and its backend's
# connection reuse; `balance first` sends the first request to the replica that holds it.
CONFIG = """global
    maxconn 64
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option redispatch 1
    retry-on conn-failure empty-response
    retries 5
    balance first
frontend http_frontend
    bind 127.0.0.1:{port}
    default_backend app
backend app
    http-reuse always
    server holder 127.0.0.1:{holder}
    server answerer 127.0.0.1:{answerer}
"""


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], DEADLINE_S)
    assert ready, "no line from the replica in time"
    return process.stdout.readline().strip()


def _replica(answer: str) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-c", REPLICA, answer], stdout=subprocess.PIPE, text=True
    )
    return process, int(_line(process))


def _start(config: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """raygate-haproxy on `config`, once it listens on `port`."""
    haproxy = subprocess.Popen([WRAPPER, "-db", "-f", str(config)], env=env)
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return haproxy
        except OSError:
            if time.monotonic() > deadline or haproxy.poll() is not None:
                haproxy.kill()
                raise AssertionError("HAProxy did not listen in time") from None
            time.sleep(0.05)  # polling for the port, not waiting out a race


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """HAProxy through raygate-haproxy on a free port; (its port, the replica that holds)."""
    holder, holder_port = _replica("hold")
    answerer, answerer_port = _replica("from the second replica")
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, holder=holder_port, answerer=answerer_port))
    env = {**os.environ, "RAY_SERVE_HAPROXY_BINARY_PATH": WRAPPER}
    haproxy = _start(config, port, env)
    try:
        yield port, holder
    finally:
        for process in (haproxy, holder, answerer):
            process.kill()
            process.wait()


def test_a_request_whose_replica_dies_before_answering_is_answered_by_another(
    proxy: tuple[int, subprocess.Popen[str]],
) -> None:
    port, holder = proxy
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hello"}]}'
    client = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE_S)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: raygate\r\n"
        b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    client.sendall(body)  # a second write, as httpx sends a body
    assert _line(holder) == "holding"
    holder.send_signal(signal.SIGKILL)  # dies with the request, as a killed replica does

    response = b""
    while b"from the second replica" not in response and (chunk := client.recv(65536)):
        response += chunk
    client.close()
    assert response.startswith(b"HTTP/1.1 200"), response
    assert response.endswith(b"from the second replica"), response


def _answer(port: int, sent: bytes) -> bytes:
    """What HAProxy answers to `sent` (all of it, until it closes the connection), waiting at
    most ANSWER_S between reads: well past the 1 s request timeout, well short of the config's
    30 s `timeout client`, which would also end the wait without the setting under test."""
    client = socket.create_connection(("127.0.0.1", port), timeout=ANSWER_S)
    client.sendall(sent)
    response = b""
    while chunk := client.recv(65536):
        response += chunk
    client.close()
    return response


@pytest.mark.parametrize(
    "sent",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: raygate\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: raygate\r\ncontent-length: 1000\r\n"
        b'content-type: application/json\r\n\r\n{"model": ',
    ],
    ids=["headers", "body"],
)
def test_a_client_that_never_finishes_its_request_is_answered_408_and_let_go(
    tmp_path: Path, sent: bytes
) -> None:
    # Ray's config bounds a request's headers by nothing but `timeout client` (an hour), and
    # HAProxy holds a body (`option http-buffer-request`) before any replica sees it.
    port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(CONFIG.format(port=port, holder=free_port(), answerer=free_port()))
    env = {**os.environ, "RAY_SERVE_HAPROXY_BINARY_PATH": WRAPPER,
           "RAYGATE_HAPROXY_REQUEST_TIMEOUT_S": "1"}  # fmt: skip
    haproxy = _start(config, port, env)
    try:
        response = _answer(port, sent)
    finally:
        haproxy.kill()
        haproxy.wait()
    assert response.startswith(b"HTTP/1.1 408 "), response
    if b"content-length" in sent:  # a stream exists: HAProxy answers with raygate's page
        error = json.loads(response.partition(b"\r\n\r\n")[2])["error"]
        assert error["code"] == "request_timeout"
