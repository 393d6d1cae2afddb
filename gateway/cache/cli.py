"""`raygate cache ...`: inspect, invalidate and evaluate the semantic cache.

    raygate cache stats [--since AGE] [--model ALIAS] [--json]
    raygate cache invalidate [--id N ...] [--model ALIAS] [--scope HASH] [--older-than AGE]
    raygate cache replay EXPORT [--samples FILE] [--per-band N] [--price-as MODEL]
                         [--progress | --no-progress]
    raygate cache replay --labels FILE

`stats` and `invalidate` work on the entry log in the gateway's database (--db, else the
config's `storage.url`), so they need no running gateway; `stats` adds the hit rate per model
from the audit trail in the same database; running cache replicas drop
invalidated entries within one sync interval (`cache.sync_interval_s`). `replay` runs an
audit export or a JSONL file of prompts through the cache's decisions in-process, with the
config's `cache` settings and no upstream call, and writes hits to label; given the labelled
file back (`--labels`) it estimates the false-hit rate (see `gateway.cache.replay`). The
replay draws a progress bar on stderr when it is a terminal (`--progress` / `--no-progress`,
or RAYGATE_PROGRESS=1/0, say otherwise); the report on stdout is the same either way.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.audit.query import AuditFilter, CacheOutcome, cache_outcomes
from gateway.audit.store import AuditStore
from gateway.audit.timespec import parse_age
from gateway.cache.log import CacheLog
from gateway.cache.lookup import Selector
from gateway.config import GatewayConfig
from gateway.progress import add_progress_option, tracked
from gateway.storage import Database
from gateway.storage.sealing import Sealer

LoadConfig = Callable[[argparse.Namespace], GatewayConfig]


def add_cache_commands(
    commands: Any, load: LoadConfig, *, clock: Callable[[], float] = time.time
) -> None:
    """Add `cache` and its subcommands to the `raygate` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="database URL (default: the config's storage.url)")
    common.add_argument("--config", type=Path, default=None, help="YAML config (RAYGATE_CONFIG)")

    cache = commands.add_parser("cache", help="inspect and invalidate the semantic cache")
    sub = cache.add_subparsers(required=True, metavar="ACTION")

    stats = sub.add_parser("stats", parents=[common], help="entries, and hit rates per model")
    stats.add_argument("--since", default="24h", help="hit rates over this age or instant")
    stats.add_argument("--model", help="one model alias only")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(run=lambda a: _run(a, load, lambda entry_log: _stats(a, entry_log, clock())))

    drop = sub.add_parser("invalidate", parents=[common], help="drop entries everywhere")
    drop.add_argument("--id", type=int, action="append", default=[], help="an entry id")
    drop.add_argument("--model", help="every entry answering this model alias")
    drop.add_argument("--scope", help="every entry of this scope hash")
    drop.add_argument("--older-than", help="entries at least this old: 90d, 12h, 30m")
    drop.set_defaults(
        run=lambda a: _run(a, load, lambda entry_log: _invalidate(a, entry_log, clock()))
    )

    again = sub.add_parser(
        "replay", help="what the cache would have served on recorded prompts, and how wrong"
    )
    again.add_argument("export", type=Path, nargs="?", help="audit export (JSON/CSV) or JSONL")
    again.add_argument("--config", type=Path, default=None, help="YAML config (RAYGATE_CONFIG)")
    again.add_argument("--samples", type=Path, help="write hits to label here (JSON lines)")
    again.add_argument("--per-band", type=int, default=25, help="hits sampled per band")
    again.add_argument("--price-as", help="price every request as this model (default: its own)")
    again.add_argument("--seed", type=int, default=7, help="sampling and exploration seed")
    again.add_argument("--labels", type=Path, help="a labelled sample: estimate false hits")
    add_progress_option(again)
    again.set_defaults(run=lambda a: _replay(a, load))


def _run(args: argparse.Namespace, load: LoadConfig, action: Callable[[CacheLog], int]) -> int:
    try:
        config = load(args)
        db = Database(args.db or config.storage.url)
        sealer = Sealer.from_keyring(config.storage.data_keyring())
        try:
            return action(CacheLog(db, sealer=sealer))
        finally:
            db.close()
    except ValueError as exc:
        print(f"raygate cache: {exc}", file=sys.stderr)
        return 2


def _stats(args: argparse.Namespace, entry_log: CacheLog, now: float) -> int:
    counts = entry_log.counts()
    log_rows = {
        "entries": counts.get("insert", 0),
        "pending_deletes": counts.get("delete", 0),
        "observations": counts.get("observe", 0),
        "traffic_rows": counts.get("traffic", 0),
    }
    when = datetime.fromtimestamp(now, UTC)
    where = AuditFilter.parse({"since": args.since, "model": args.model}, when)
    outcomes = cache_outcomes(AuditStore(entry_log.db), where)
    if args.json:
        models = [
            {**o.model_dump(), "hits": o.hits, "lookups": o.lookups, "hit_rate": o.hit_rate}
            for o in outcomes
        ]
        print(json.dumps({**log_rows, "since": args.since, "models": models}))
        return 0
    print(
        f"{log_rows['entries']:,} entries in the log ({log_rows['pending_deletes']:,} pending "
        f"deletes, {log_rows['observations']:,} observations, "
        f"{log_rows['traffic_rows']:,} traffic rows)"
    )
    print(f"requests since {args.since} (audit trail):")
    print(_outcome_table(outcomes))
    return 0


def _outcome_table(outcomes: list[CacheOutcome]) -> str:
    """A fixed-width table: one row per model, the hit rate over lookups (bypass excluded)."""
    if not outcomes:
        return "  none the cache applies to"
    phases = ("exact", "normalized", "semantic", "bypass")
    rows: list[tuple[str, ...]] = [("model", "lookups", "hits", "rate", *phases, "avoided")]
    for o in outcomes:
        rate = "-" if o.hit_rate is None else f"{o.hit_rate:.1%}"
        counts = (f"{o.phases.get(p, 0):,}" for p in phases)
        avoided = f"${o.cost_avoided_usd:,.4f}"
        rows.append((o.model, f"{o.lookups:,}", f"{o.hits:,}", rate, *counts, avoided))
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    lines = []
    for model, *numbers in rows:
        cells = [model.ljust(widths[0])]
        cells += [n.rjust(w) for n, w in zip(numbers, widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells))
    return "\n".join(lines)


def _invalidate(args: argparse.Namespace, entry_log: CacheLog, now: float) -> int:
    before = None
    if args.older_than:
        before = now - parse_age(args.older_than).total_seconds()
    selector = Selector(tuple(args.id), args.scope, args.model, before)
    if selector.empty():
        raise ValueError("say which entries: --id, --model, --scope and/or --older-than")
    ids = entry_log.invalidate(selector, now)
    print(json.dumps({"invalidated": len(ids), "ids": ids}))
    return 0


def _replay(args: argparse.Namespace, load: LoadConfig) -> int:
    # Imported here: the replay loads FAISS and the embedder, which no other command needs.
    from gateway.accounting.pricing import PriceTable
    from gateway.cache.embedder import Embedder
    from gateway.cache.replay import estimate, read_samples, replay, write_samples
    from gateway.cache.replay_input import Skipped, read_records

    try:
        if args.labels is not None:
            print(json.dumps(estimate(read_samples(args.labels)), indent=1))
            return 0
        if args.export is None:
            raise ValueError("give an export to replay, or --labels FILE to estimate from")
        config = load(args)
        skipped = Skipped()
        records = list(read_records(args.export, skipped))
        report, samples = asyncio.run(
            replay(
                tracked(records, "replay", unit="record", show=args.progress),
                config.cache,
                Embedder(batch_size=config.cache.embed_batch_size, onnx=config.cache.onnx),
                prices=PriceTable.from_config(config.pricing),
                price_as=args.price_as,
                per_band=args.per_band,
                seed=args.seed,
            )
        )
    except (OSError, ValueError) as exc:
        print(f"raygate cache replay: {exc}", file=sys.stderr)
        return 2
    report["records_skipped"] = dict(skipped.reasons)
    if args.samples is not None:
        write_samples(args.samples, samples)
        report["samples_file"] = str(args.samples)
    print(json.dumps(report, indent=1))
    return 0
