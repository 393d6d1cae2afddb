"""A real PostgreSQL on a free loopback port, in a temporary directory, for tests.

    with PostgresServer.start(bin_dir) as server:
        url = server.create_database("audit_test")

`initdb` and `postgres` refuse to run as root; started by root, the server runs as the
`postgres` system user when there is one (Debian's package creates it), else as `nobody`, in a
directory that user owns. pytest fixtures: `postgres_server` (one per session) and
`postgres_url` (a fresh, empty database per test).
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import psycopg
import pytest

from tests.support import free_port, require_binary


def postgres_binary() -> str:
    """The `postgres` server binary; skips (fails under CI) when PostgreSQL is not installed."""
    installed = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    return require_binary("postgres", "/usr/lib/postgresql/15/bin/postgres", *installed)


class PostgresServer:
    """A throwaway PostgreSQL cluster; `stop()` (or leaving the `with`) removes it."""

    def __init__(self, bin_dir: Path, *, fsync: bool = False) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        self.user = "raygate"
        self._fsync = fsync
        self._dir = Path(tempfile.mkdtemp(prefix="raygate-pg-"))
        self._run_as = _unprivileged_user() if os.geteuid() == 0 else None
        if self._run_as is not None:
            os.chown(self._dir, self._run_as.pw_uid, self._run_as.pw_gid)
        self._names = itertools.count(1)

    @classmethod
    @contextmanager
    def start(cls, bin_dir: Path, *, fsync: bool = False) -> Iterator[PostgresServer]:
        """A running server, stopped and deleted on exit."""
        server = cls(bin_dir, fsync=fsync)
        try:
            server._initdb()
            log, options = server._dir / "server.log", server._options()
            server._pg_ctl(
                "start", "--wait", "--timeout=60", f"--log={log}", f"--options={options}"
            )
        except BaseException:
            server.stop()
            raise
        with server:
            yield server

    def __enter__(self) -> PostgresServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def url(self, database: str = "postgres") -> str:
        """The URL of `database` on this server."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        name = name or f"test_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def log(self) -> str:
        """The server's log so far (for a failing test's message)."""
        path = self._dir / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete its directory."""
        if (self._dir / "data" / "postmaster.pid").exists():
            self._pg_ctl("stop", "--mode=fast", "--wait", check=False)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _initdb(self) -> None:
        data, user = self._dir / "data", self.user
        options = ("--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        self._run(str(self.bin_dir / "initdb"), f"--pgdata={data}", f"--username={user}", *options)

    def _options(self) -> str:
        options = [
            f"-p {self.port}",
            "-c listen_addresses=127.0.0.1",
            f"-k {self._dir}",  # the Unix socket stays in our directory, not /var/run
            "-c max_connections=200",
        ]
        if not self._fsync:
            # Tests need no durability across power cuts; benchmarks keep the default (on).
            options += ["-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"]
        return " ".join(options)

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        self._run(
            str(self.bin_dir / "pg_ctl"), f"--pgdata={self._dir / 'data'}", *args, check=check
        )

    def _run(self, *command: str, check: bool = True) -> None:
        user = self._run_as
        result = subprocess.run(
            command,
            cwd=self._dir,
            capture_output=True,
            text=True,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}"
                f"{result.stderr}\n{self.log()}"
            )


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user (postgres or nobody) to run PostgreSQL as")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL for the test session."""
    bin_dir = Path(postgres_binary()).parent
    with PostgresServer.start(bin_dir) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    return postgres_server.create_database()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The gateway's database URL, once on SQLite and once on PostgreSQL (the same SQL runs
    on both: `gateway.storage.Database`)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gw.db'}"
    return str(request.getfixturevalue("postgres_url"))
