"""`raygate cache ...`: inspect and invalidate the semantic cache.

    raygate cache stats
    raygate cache invalidate [--id N ...] [--model ALIAS] [--scope HASH] [--older-than AGE]

Both work on the entry log in the gateway's database (--db, else the config's `storage.url`),
so they need no running gateway; running cache replicas drop invalidated entries within one
sync interval (`cache.sync_interval_s`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.audit.timespec import parse_age
from gateway.cache.log import CacheLog
from gateway.cache.lookup import Selector
from gateway.config import GatewayConfig
from gateway.storage import Database

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

    stats = sub.add_parser("stats", parents=[common], help="entries stored in the log")
    stats.set_defaults(run=lambda a: _run(a, load, lambda entry_log: _stats(entry_log)))

    drop = sub.add_parser("invalidate", parents=[common], help="drop entries everywhere")
    drop.add_argument("--id", type=int, action="append", default=[], help="an entry id")
    drop.add_argument("--model", help="every entry answering this model alias")
    drop.add_argument("--scope", help="every entry of this scope hash")
    drop.add_argument("--older-than", help="entries at least this old: 90d, 12h, 30m")
    drop.set_defaults(
        run=lambda a: _run(a, load, lambda entry_log: _invalidate(a, entry_log, clock()))
    )


def _run(args: argparse.Namespace, load: LoadConfig, action: Callable[[CacheLog], int]) -> int:
    try:
        db = Database(args.db or load(args).storage.url)
        try:
            return action(CacheLog(db))
        finally:
            db.close()
    except ValueError as exc:
        print(f"raygate cache: {exc}", file=sys.stderr)
        return 2


def _stats(entry_log: CacheLog) -> int:
    counts = entry_log.counts()
    print(
        json.dumps({"entries": counts.get("insert", 0), "pending_deletes": counts.get("delete", 0)})
    )
    return 0


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
