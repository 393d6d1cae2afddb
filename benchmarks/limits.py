"""Cost of the per-request limit checks: RateLimiter.check on Redis and in-process, and a
BudgetLedger reserve + settle on SQLite (and on PostgreSQL when it is installed).

Each is timed call by call, sequentially (the latency a request pays, not throughput), after
a warm-up. The rate limits are set high enough that nothing is refused: every call runs the
full path (five buckets: key rpm, user rpm + tpm, model tpm + per-user rpm). Prints a table
and writes `benchmarks/results/limits.json`.

    .venv/bin/python -m benchmarks.limits [--calls 2000] [--no-postgres] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from benchmarks.report import Report, latency_summary, markdown_table

RATE_LIMITS: dict[str, Any] = {
    "per_key": {"rpm": 10**7},
    "per_user": {"rpm": 10**7, "tpm": 10**12},
    "models": {"sim-small": {"tpm": 10**12, "per_user": {"rpm": 10**7}}},
}
BUDGETS: dict[str, Any] = {
    "users": {"alice": {"usd_per_day": 10**6, "usd_per_month": 10**7}},
    "groups": {"eng": {"usd_per_month": 10**7}},
    "keys": {"k1": {"usd_per_day": 10**6}},
}


async def _time(call: Callable[[], Awaitable[object]], calls: int) -> dict[str, Any]:
    for _ in range(min(200, calls)):
        await call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    summary = latency_summary(samples, digits=3)
    return {
        "calls": calls,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "max_ms": summary["max_ms"],
    }


async def _rate_limits(url: str | None, calls: int) -> dict[str, Any]:
    from gateway.identity.principal import Principal
    from gateway.limits.config import RateLimitsConfig
    from gateway.limits.limiter import RateLimiter

    config = RateLimitsConfig.model_validate({**RATE_LIMITS, "store": {"url": url}})
    limiter = RateLimiter.from_config(config)
    caller = Principal(user_id="alice", auth_method="bench", groups=("eng",), key_id="k1")
    try:
        return await _time(lambda: limiter.check(caller, "sim-small", tokens_estimate=500), calls)
    finally:
        await limiter.close()


async def _budgets(url: str, calls: int) -> dict[str, Any]:
    from gateway.accounting.budgets import BudgetLedger
    from gateway.accounting.config import BudgetsConfig
    from gateway.identity.principal import Principal
    from gateway.storage.database import Database

    ledger = BudgetLedger(Database(url), BudgetsConfig.model_validate(BUDGETS))
    caller = Principal(user_id="alice", auth_method="bench", groups=("eng",), key_id="k1")

    async def reserve_and_settle() -> None:
        await ledger.settle(await ledger.reserve(caller, 0.01), 0.008)

    return await _time(reserve_and_settle, calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, help="write the JSON here, not under results/")
    args = parser.parse_args()
    report = Report("limits", parameters=vars(args))

    from tests.servers.postgres import PostgresServer
    from tests.servers.redis import RedisServer

    rows: list[dict[str, Any]] = []

    def record(name: str, result: dict[str, Any]) -> None:
        rows.append({"what": name, **result})
        print(f"  {name:48} {result}", flush=True)

    with tempfile.TemporaryDirectory(prefix="raygate-bench-") as tmp:
        with RedisServer.start("redis-server", Path(tmp) / "redis") as redis_server:
            record(
                "RateLimiter.check, Redis (loopback)",
                asyncio.run(_rate_limits(redis_server.url, args.calls)),
            )
        record("RateLimiter.check, in-process", asyncio.run(_rate_limits(None, args.calls)))
        record(
            "BudgetLedger.reserve + settle, SQLite (WAL)",
            asyncio.run(_budgets(f"sqlite:///{tmp}/budgets.db", args.calls)),
        )
    pg_bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True)
    if pg_bins and not args.no_postgres:
        with PostgresServer.start(pg_bins[0].parent, fsync=True) as pg:
            record(
                "BudgetLedger.reserve + settle, PostgreSQL",
                asyncio.run(_budgets(pg.create_database("bench"), args.calls)),
            )

    table = markdown_table(
        ["what", "calls", "p50 ms", "p99 ms", "max ms"],
        [[r["what"], r["calls"], r["p50_ms"], r["p99_ms"], r["max_ms"]] for r in rows],
        align="lrrrr",
    )
    print(f"\n{table}\n")
    report.write({"results": rows}, path=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
