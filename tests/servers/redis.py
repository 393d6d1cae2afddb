"""A real redis-server on a free loopback port, in a temporary directory, for tests.

    with RedisServer.start(redis_binary(), tmp_path) as server:
        client = redis.Redis.from_url(server.url)

No persistence (`--save ''`, no AOF). `stop()` and `start()` again keep the port, so a test can
take Redis away and bring it back. pytest fixtures: `redis_server` (one per session) and
`redis_url` (that server, emptied before the test).
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import pytest
import redis

from tests.support import free_port, require_binary

_START_DEADLINE_S = 15.0


def redis_binary() -> str:
    """The redis-server binary; skips (fails under CI) when Redis is not installed."""
    return require_binary("redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server")


class RedisServer:
    """One redis-server process; a context manager that stops it."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextmanager
    def start(cls, binary: str, workdir: Path) -> Iterator[RedisServer]:
        """A running server, stopped on exit."""
        server = cls(binary, workdir)
        server.run()
        with server:
            yield server

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0"""
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def run(self) -> None:
        """Start redis-server (again, after `stop`, on the same port); returns once it PINGs."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / "redis.log").open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + _START_DEADLINE_S
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as client:
            while True:
                if self._process.poll() is not None:
                    raise RuntimeError(f"redis-server exited:\n{self.log()}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not answer:\n{self.log()}") from None
                    time.sleep(0.02)  # polling a starting process, not synchronising a test

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def log(self) -> str:
        """What the server wrote so far (for a failing test's message)."""
        path = self.workdir / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the test session."""
    with (
        tempfile.TemporaryDirectory(prefix="raygate-redis-") as workdir,
        RedisServer.start(redis_binary(), Path(workdir)) as server,
    ):
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url
