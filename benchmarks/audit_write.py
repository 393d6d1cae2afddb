"""Audit trail write path: records/s through AuditWriter, and what `record()` costs a request.

For SQLite (a file) and PostgreSQL (a throwaway server started here, durable defaults: fsync
on), many asyncio producers each `await writer.record(...)` as request handlers would, then
`aclose()` commits the rest, and the chain is verified. Three scenarios per backend:

- saturated, defaults: producers offer records as fast as they can; records/s from the first
  `record()` to the end of `aclose()` is the writer's capacity. The load is larger than
  `max_queue`, so once the queue is full requests wait (back-pressure) and p99 shows it.
- saturated, max_queue=500: the same with a small queue: back-pressure from the start.
- paced: a steady offered rate below capacity; p50/p99 of `record()` is what a request pays.
- saturated, keyed / keyed + sealed: the defaults with the chain keyed (HMAC under
  `audit.chain_key`), then also prompts and answers kept in full and sealed (AES-GCM under
  `storage.data_key`): what the keys cost the writer and `verify`, side by side in one run.

Then the filter by group through the side table against a LIKE over the JSON column (the
storage choice it measures), and a summary by topic.

    .venv/bin/python -m benchmarks.audit_write [--records 20000] [--producers 200]
        [--paced-rate 1000] [--paced-records 5000] [--backends sqlite postgresql] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.report import Report, percentile
from gateway.audit import (
    AuditPrincipal,
    AuditRecord,
    AuditStore,
    AuditWriter,
    PolicyDecision,
    verify,
)
from gateway.audit.content import ContentPolicy
from gateway.audit.query import AuditFilter, list_records, summarize
from gateway.storage.keyring import Keyring
from gateway.storage.sealing import Sealer

PROMPT = "Summarise the attached quarterly figures for the finance committee, please. " * 8
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def make_record(n: int) -> AuditRecord:
    """A realistic record: a principal in two groups, a policy decision, a topic, content."""
    return AuditRecord(
        ts=T0 + timedelta(milliseconds=n),
        request_id=f"req_{n:08d}",
        principal=AuditPrincipal(
            user_id=f"user{n % 500}",
            auth_method="oidc",
            email=f"user{n % 500}@example.org",
            department=f"dept{n % 12}",
            groups=["staff", f"team{n % 40}"],
            roles=["member"],
        ),
        client_address="10.1.2.3",
        route="/v1/chat/completions",
        model_requested=("gpt-4o-mini", "claude-haiku", "local-llama")[n % 3],
        route_taken="openai/gpt-4o-mini",
        cache_phase=("miss", "exact", "semantic")[n % 3],
        similarity=0.93,
        decisions=[
            PolicyDecision(rule="pii", detector="regex", action="redact", span_types=["EMAIL"])
        ],
        topics=[("finance", "hr", "engineering", "legal")[n % 4]],
        tokens_in=420,
        tokens_out=180,
        cost_usd=0.00042,
        latency_ms=812.5,
        status=200,
        prompt=PROMPT,
        response="The committee summary: revenue grew, costs held.",
    )


async def _drive(
    store: AuditStore,
    records: list[AuditRecord],
    producers: int,
    rate: float | None,
    **settings: Any,
) -> dict[str, Any]:
    writer = AuditWriter(store, **settings)
    latencies: list[float] = []  # microseconds
    # Paced: each producer is one stream of requests, together `rate` per second.
    gap_s = producers / rate if rate else 0.0

    async def produce(share: list[AuditRecord]) -> None:
        for record in share:
            started = time.perf_counter_ns()
            await writer.record(record)
            latencies.append((time.perf_counter_ns() - started) / 1000)
            if gap_s:
                await asyncio.sleep(gap_s)  # the pace of the load, not a synchronisation

    shares = [records[p::producers] for p in range(producers)]
    started = time.perf_counter()
    await asyncio.gather(*(produce(share) for share in shares))
    enqueued = time.perf_counter() - started
    await writer.aclose()
    elapsed = time.perf_counter() - started
    return {
        "records_per_s": round(len(records) / elapsed, 1),
        "seconds": round(elapsed, 3),
        "enqueue_phase_s": round(enqueued, 3),
        "record_call_p50_us": _rounded(percentile(latencies, 50)),
        "record_call_p99_us": _rounded(percentile(latencies, 99)),
        "record_call_max_us": _rounded(max(latencies, default=None)),
        "record_call_mean_us": _rounded(statistics.fmean(latencies) if latencies else None),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _timed(fn: Any, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return round(best * 1000, 2)


CHAIN_KEY = Keyring.parse("bench:" + "c" * 43)
DATA_KEY = Keyring.parse("bench:" + "d" * 43)
FULL = ContentPolicy(prompt="full", response="full")


def _run_backend(backend: str, url_for: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    # (name, records, offered rate or None for as fast as possible, writer settings, keys)
    scenarios: list[tuple[str, int, float | None, dict[str, Any], dict[str, Any]]] = [
        ("saturated, defaults", args.records, None, {}, {}),
        ("saturated, max_queue=500", args.records, None, {"max_queue": 500}, {}),
        (f"paced {args.paced_rate:g}/s, defaults", args.paced_records, args.paced_rate, {}, {}),
        ("saturated, keyed", args.records, None, {}, {"chain_keys": CHAIN_KEY}),
        (
            "saturated, keyed + sealed",
            args.records,
            None,
            {"content": FULL},
            {"chain_keys": CHAIN_KEY, "sealer": Sealer(DATA_KEY)},
        ),
    ]
    for name, count, rate, settings, keys in scenarios:
        store = AuditStore.open(url_for(name), **keys)
        records = [make_record(n) for n in range(count)]
        row = {"backend": backend, "scenario": name, "records": count}
        shown = {k: "full" if k == "content" else v for k, v in settings.items()}
        row |= {"producers": args.producers, "offered_per_s": rate, "settings": shown}
        row |= {"keys": sorted(keys)}
        row |= asyncio.run(_drive(store, records, args.producers, rate, **settings))
        started = time.perf_counter()
        report = verify(store)
        verify_s = time.perf_counter() - started
        assert report.ok and report.checked == count == store.count(), report
        row |= {"verify_records_per_s": round(count / verify_s, 1)}
        if name == "saturated, defaults":
            row |= _query_costs(store)
        rows.append(row)
        store.db.close()
    return rows


_BY_SIDE_TABLE = "r.seq IN (SELECT seq FROM audit_groups WHERE name = ?)"
_BY_JSON_LIKE = "r.principal_groups LIKE ?"


def _query_costs(store: AuditStore) -> dict[str, Any]:
    """The group filter through the side table vs a LIKE over the JSON column (best of 5).

    The same query both ways (seqs only, so parsing records is not what is timed): the newest
    100 matches of a group that 1 record in 40 has, and a count of all its records.
    """

    def seqs(where: str, value: str) -> None:
        store.db.fetchall(
            f"SELECT r.seq FROM audit_records r WHERE {where} ORDER BY r.seq DESC LIMIT 100",
            (value,),
        )

    def count(where: str, value: str) -> None:
        store.db.fetchone(f"SELECT COUNT(*) FROM audit_records r WHERE {where}", (value,))

    return {
        "group_page_side_table_ms": _timed(lambda: seqs(_BY_SIDE_TABLE, "team7")),
        "group_page_json_like_ms": _timed(lambda: seqs(_BY_JSON_LIKE, '%"team7"%')),
        "group_count_side_table_ms": _timed(lambda: count(_BY_SIDE_TABLE, "team7")),
        "group_count_json_like_ms": _timed(lambda: count(_BY_JSON_LIKE, '%"team7"%')),
        "records_page_of_100_ms": _timed(
            lambda: list_records(store, AuditFilter(group="team7"), limit=100)
        ),
        "summary_by_topic_ms": _timed(lambda: summarize(store, AuditFilter(), "topic")),
        "summary_by_department_ms": _timed(lambda: summarize(store, AuditFilter(), "department")),
    }


@contextmanager
def _postgres() -> Iterator[Any]:
    from tests.servers.postgres import PostgresServer

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), reverse=True)
    if not found:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    with PostgresServer.start(Path(found[0]).parent, fsync=True) as server:
        yield server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--producers", type=int, default=200)
    parser.add_argument("--paced-rate", type=float, default=1000, help="records/s offered")
    parser.add_argument("--paced-records", type=int, default=5000)
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--out", type=Path, help="write the JSON here, not under results/")
    args = parser.parse_args()
    report = Report("audit_write", parameters=vars(args))

    rows: list[dict[str, Any]] = []
    if "sqlite" in args.backends:
        with tempfile.TemporaryDirectory() as tmp:
            rows += _run_backend(
                "sqlite",
                lambda name: f"sqlite:///{tmp}/{_slug(name)}.db",
                args,
            )
    if "postgresql" in args.backends:
        with _postgres() as server:
            rows += _run_backend(
                "postgresql",
                lambda name: server.create_database(_slug(name)),
                args,
            )

    print(
        f"{'backend':11} {'scenario':28} {'records/s':>10} {'p50 us':>8} {'p99 us':>10} "
        f"{'max us':>10} {'verify/s':>9}"
    )
    for r in rows:
        print(
            f"{r['backend']:11} {r['scenario']:28} {r['records_per_s']:>10} "
            f"{r['record_call_p50_us']:>8} {r['record_call_p99_us']:>10} "
            f"{r['record_call_max_us']:>10} {r['verify_records_per_s']:>9}"
        )
    for r in rows:
        if "group_page_side_table_ms" in r:
            print(
                f"{r['backend']}: group filter page {r['group_page_side_table_ms']} ms (side "
                f"table) vs {r['group_page_json_like_ms']} ms (LIKE on JSON); count "
                f"{r['group_count_side_table_ms']} vs {r['group_count_json_like_ms']} ms; "
                f"a parsed page of 100 {r['records_page_of_100_ms']} ms; "
                f"summary by topic {r['summary_by_topic_ms']} ms"
            )
    report.write(
        {
            "postgresql": "local server started by the benchmark, fsync on (defaults)",
            "sqlite": "WAL, synchronous=NORMAL (the data layer's settings)",
            "rows": rows,
        },
        path=args.out,
    )
    return 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


if __name__ == "__main__":
    sys.exit(main())
