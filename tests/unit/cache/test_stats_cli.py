"""`raygate cache stats`: the entry log's rows and, from the audit trail in the same database,
each model's hit rate over a window, as a table or JSON."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gateway.audit.record import AuditRecord
from gateway.audit.store import AuditStore
from gateway.cache.cli import add_cache_commands
from gateway.cache.log import CacheLog, LoggedEntry
from gateway.config import GatewayConfig
from gateway.storage import Database

NOW = datetime(2026, 12, 2, 12, tzinfo=UTC)


def _stats(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> str:
    parser = argparse.ArgumentParser(prog="raygate")
    config = GatewayConfig.model_validate({})
    add_cache_commands(
        parser.add_subparsers(required=True), lambda args: config, clock=NOW.timestamp
    )
    args = parser.parse_args(["cache", "stats", "--db", f"sqlite:///{db}", *argv])
    capsys.readouterr()
    assert args.run(args) == 0
    return capsys.readouterr().out


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "raygate.db"
    db = Database(f"sqlite:///{path}")
    CacheLog(db).append(
        LoggedEntry(0, "s", "sim-small", "q", "a", np.ones(384, dtype=np.float32), 1.0)
    )

    def record(model: str, phase: str | None, hours_ago: float) -> AuditRecord:
        avoided = 0.002 if phase in ("exact", "semantic") else None
        return AuditRecord(
            ts=NOW - timedelta(hours=hours_ago),
            model_requested=model,
            cache_phase=phase,  # type: ignore[arg-type]
            cost_avoided_usd=avoided,
        )

    AuditStore(db).append(
        [
            record("sim-small", "miss", 1),
            record("sim-small", "exact", 1),
            record("sim-small", "semantic", 2),
            record("sim-small", "bypass", 2),
            record("sim-small", "miss", 30),  # outside the default 24 h
            record("sim-other", "miss", 3),
            record("sim-other", None, 3),  # the cache did not apply
        ]
    )
    db.close()
    return path


def test_stats_print_each_models_hit_rate(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _stats(capsys, database).splitlines()
    assert out[0].startswith("1 entries in the log")
    small = next(line.split() for line in out if line.strip().startswith("sim-small"))
    other = next(line.split() for line in out if line.strip().startswith("sim-other"))
    # model, lookups, hits, rate, exact, normalized, semantic, bypass, avoided
    assert small == ["sim-small", "3", "2", "66.7%", "1", "0", "1", "1", "$0.0040"]
    assert other[:4] == ["sim-other", "1", "0", "0.0%"]


def test_stats_as_json_over_a_chosen_window(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = json.loads(_stats(capsys, database, "--since", "48h", "--model", "sim-small", "--json"))
    assert stats["entries"] == 1
    (small,) = stats["models"]
    assert (small["lookups"], small["hits"]) == (4, 2)
    assert small["hit_rate"] == pytest.approx(0.5)
