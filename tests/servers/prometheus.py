"""A real Prometheus (Debian's `prometheus`) on a free loopback port, scraping given targets
every second, for tests that check what a running gateway exports.

    with PrometheusServer.start(prometheus_binary(), tmp_path, ["127.0.0.1:9464"]) as prom:
        prom.wait_for('sum(ray_raygate_requests_total) >= 3')

Queries go through Prometheus's HTTP API (`/api/v1/query`), as Grafana's would.
"""

from __future__ import annotations

import math
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.support import free_port, require_binary

_START_DEADLINE_S = 30.0


class NotReady(Exception):
    """Prometheus answered 503: it has not finished starting."""


def prometheus_binary() -> str:
    """The prometheus binary; skips (fails under CI) when Prometheus is not installed."""
    return require_binary("prometheus", "/usr/bin/prometheus")


class PrometheusServer:
    """One Prometheus process scraping `targets` (host:port of `/metrics` endpoints)."""

    def __init__(self, binary: str, workdir: Path, targets: Sequence[str]) -> None:
        self.binary = binary
        self.workdir = workdir
        self.targets = list(targets)
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextmanager
    def start(
        cls, binary: str, workdir: Path, targets: Sequence[str]
    ) -> Iterator[PrometheusServer]:
        """A running server that has scraped every target once, stopped on exit."""
        server = cls(binary, workdir, targets)
        server.run()
        try:
            yield server
        finally:
            server.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def run(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "raygate", "static_configs": [{"targets": self.targets}]}
            ],
        }
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = (self.workdir / "prometheus.log").open("ab")
        self._process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=log,
        )
        self.wait_for("up == 1", deadline_s=_START_DEADLINE_S)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=30)
        self._process = None

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant query's result series (`data.result`); raises on a query error."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        if response.status_code == 503:  # still starting: its storage is not open yet
            raise NotReady(response.text)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {expr!r}: {body.get('error')}")
        return list(body["data"]["result"])

    def value(self, expr: str) -> float:
        """The value of an expression that yields one series (0 when it yields none)."""
        result = self.query(expr)
        assert len(result) <= 1, f"{expr!r} gave {len(result)} series"
        return float(result[0]["value"][1]) if result else 0.0

    def wait_for(self, expr: str, *, deadline_s: float = 60.0) -> list[dict[str, Any]]:
        """Poll `expr` until it yields a series (a comparison that holds), or fail at the
        deadline with the log's tail. Ray's agent exports on an interval, Prometheus scrapes
        on another: the condition, not a sleep, decides."""
        end = time.monotonic() + deadline_s
        while True:
            if self._process is not None and self._process.poll() is not None:
                raise AssertionError(f"Prometheus exited:\n{self._log_tail()}")
            try:
                result = self.query(expr)
            except (httpx.TransportError, NotReady):
                result = []  # not listening, or not ready, yet
            if result:
                return result
            if time.monotonic() > end:
                raise AssertionError(f"{expr!r} still empty after {deadline_s} s")
            time.sleep(0.25)  # a poll interval, not a synchronisation

    def without_data(self, exprs: Sequence[str], *, settle_s: float = 15.0) -> list[str]:
        """The expressions still without data (no series with a finite value: a quantile of
        no new observations is NaN, which Grafana shows as no data) after up to `settle_s`
        of exports and scrapes."""
        end = time.monotonic() + settle_s
        while True:
            missing = [expr for expr in exprs if not _has_data(self.query(expr))]
            if not missing or time.monotonic() > end:
                return missing
            time.sleep(0.5)  # a poll interval: Ray exports and Prometheus scrapes every second

    def _log_tail(self) -> str:
        return (self.workdir / "prometheus.log").read_text()[-3000:]


def _has_data(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(series["value"][1])) for series in result)
