"""`raygate audit ...`: verify, query, export and prune the audit trail; manage its keys.

    raygate audit verify [--db URL] [--checkpoint FILE] [--expect-head SEQ:HASH] [--json]
                         [--progress | --no-progress]
    raygate audit checkpoint [--out FILE]      # the verified head, MAC'd: keep it elsewhere
    raygate audit query [filters] [--group-by department|topic|user|model|group|action]
                        [--format table|json|csv] [--limit N] [--cursor C]
    raygate audit export --format csv|json --out FILE [filters] [--progress | --no-progress]
    raygate audit prune --older-than 90d
    raygate audit adopt-key                    # once, after audit.chain_key is first set
    raygate audit rekey                        # seal content under the current data key

Filters: --user, --department, --group, --topic, --action, --model, --since, --until (ISO date
or date-time, or an age such as 7d). The database is --db, else the config's `storage.url`;
the chain and data keys are the config's (`audit.chain_key`, `storage.data_key`).
`verify` exits 0 when the chain is intact, 1 when it is not (saying where), 2 on a usage error.
`verify` and `export` draw a progress bar on stderr when it is a terminal (`--progress` /
`--no-progress`, or RAYGATE_PROGRESS=1/0, say otherwise); stdout is the same either way.
`adopt-key` and `rekey` are recorded in the trail with the account that ran them; a prune
shows in the (MAC'd) anchor it moves.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from gateway.audit import schema
from gateway.audit.actions import admin_record, cli_actor, record_now
from gateway.audit.checkpoint import Checkpoint
from gateway.audit.export import write_export
from gateway.audit.keying import adopt_key, make_checkpoint, rekey
from gateway.audit.query import (
    FILTER_FIELDS,
    GROUP_BY,
    AuditFilter,
    RecordPage,
    SummaryRow,
    count_records,
    list_records,
    summarize,
)
from gateway.audit.record import utc_now
from gateway.audit.retention import prune
from gateway.audit.store import AuditStore, ChainChanged, ChainPoint
from gateway.audit.timespec import parse_age
from gateway.audit.verify import verify
from gateway.config import GatewayConfig
from gateway.progress import add_progress_option, draws, progress_bar
from gateway.storage import Database

LoadConfig = Callable[[argparse.Namespace], GatewayConfig]
Clock = Callable[[], datetime]


def add_audit_commands(
    commands: Any, load: LoadConfig | None = None, *, clock: Clock = utc_now
) -> None:
    """Add `audit` and its subcommands to the `raygate` parser.

    `load` reads the gateway config for the database URL when --db is not given (default: the
    file named by --config, else RAYGATE_CONFIG, else the embedded default).
    """
    load = load or _load_default_config
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="database URL (default: the config's storage.url)")
    common.add_argument("--config", type=Path, default=None, help="YAML config (RAYGATE_CONFIG)")
    filters = argparse.ArgumentParser(add_help=False)
    for name in FILTER_FIELDS:
        filters.add_argument(f"--{name}", help=_FILTER_HELP.get(name))

    audit = commands.add_parser("audit", help="verify, query, export and prune the audit trail")
    sub = audit.add_subparsers(required=True, metavar="ACTION")

    check = sub.add_parser("verify", parents=[common], help="check the hash chain")
    check.add_argument("--checkpoint", type=Path, help="a checkpoint file made earlier")
    check.add_argument("--expect-head", help="SEQ:HASH of a head recorded earlier")
    check.add_argument("--json", action="store_true", help="print the full report as JSON")
    add_progress_option(check)
    check.set_defaults(run=lambda a: _run(a, load, clock, _verify))

    point = sub.add_parser(
        "checkpoint", parents=[common], help="verify, then write the head MAC'd with the key"
    )
    point.add_argument("--out", default="-", help="file to write; - for stdout (default)")
    point.set_defaults(run=lambda a: _run(a, load, clock, _checkpoint))

    adopt = sub.add_parser(
        "adopt-key", parents=[common], help="make an unkeyed (older) chain keyed from now on"
    )
    adopt.set_defaults(run=lambda a: _run(a, load, clock, _adopt_key))

    reseal = sub.add_parser(
        "rekey", parents=[common], help="seal stored content under the current data key"
    )
    reseal.set_defaults(run=lambda a: _run(a, load, clock, _rekey))

    query = sub.add_parser("query", parents=[common, filters], help="list or aggregate records")
    query.add_argument("--group-by", choices=GROUP_BY, help="counts, tokens and cost per value")
    query.add_argument("--format", choices=("table", "json", "csv"), default="table")
    query.add_argument("--limit", type=int, default=100, help="records per page (newest first)")
    query.add_argument("--cursor", help="the next_cursor of the page before")
    query.set_defaults(run=lambda a: _run(a, load, clock, _query))

    export = sub.add_parser("export", parents=[common, filters], help="write records to a file")
    export.add_argument("--format", choices=("csv", "json"), required=True)
    export.add_argument("--out", required=True, help="file to write; - for stdout")
    add_progress_option(export)
    export.set_defaults(run=lambda a: _run(a, load, clock, _export))

    cut = sub.add_parser("prune", parents=[common], help="delete old records, keep the chain")
    cut.add_argument("--older-than", required=True, help="an age: 90d, 12h, 2w")
    cut.set_defaults(run=lambda a: _run(a, load, clock, _prune))


_FILTER_HELP = {
    "user": "the principal's user id",
    "group": "one of the principal's groups",
    "action": "a policy action taken (e.g. block, redact)",
    "model": "the model the client asked for",
    "since": "at or after: 2025-01-31, 2025-01-31T12:00:00Z, or an age like 7d",
    "until": "before: same forms as --since",
}


def _load_default_config(args: argparse.Namespace) -> GatewayConfig:
    # Imported here: gateway.cli imports this module to build its parser.
    from gateway.cli import default_config_path
    from gateway.config import load_config

    return load_config(args.config or default_config_path())


Action = Callable[[argparse.Namespace, AuditStore, datetime], int]


def _run(args: argparse.Namespace, load: LoadConfig, clock: Clock, action: Action) -> int:
    try:
        # The config gives the keys even when --db names the database.
        config = load(args)
        store = AuditStore.for_gateway(Database(args.db or config.storage.url), config)
        try:
            return action(args, store, clock())
        finally:
            store.db.close()
    except (ValueError, ChainChanged) as exc:
        # ConfigError, KeyringError, SealError and pydantic's ValidationError are ValueErrors.
        print(f"raygate audit: {exc}", file=sys.stderr)
        return 2


def _verify(args: argparse.Namespace, store: AuditStore, now: datetime) -> int:
    expected = _head(args.expect_head) if args.expect_head else None
    checkpoint = _read_checkpoint(args.checkpoint) if args.checkpoint else None
    state = store.chain_state()
    to_check = state.head.seq - state.anchor.seq  # the records from the anchor to the head
    with progress_bar("verify", total=to_check, unit="record", show=args.progress) as advance:
        report = verify(store, expected_head=expected, checkpoint=checkpoint, progress=advance)
    if args.json:
        print(report.model_dump_json(indent=2))
    elif report.problem is None:
        head = report.head
        keyed = "keyed" if report.keyed else "UNKEYED (set audit.chain_key)"
        print(
            f"audit trail intact: {report.checked} records checked "
            f"(seq {report.anchor.seq + 1}..{head.seq}), {keyed}; head {head.seq}:{head.hash}"
        )
        if checkpoint is not None:
            print(f"reaches checkpoint {checkpoint.seq} of {checkpoint.created_at}")
    if report.problem is not None:
        print(f"audit trail BROKEN at {report.problem}", file=sys.stderr)
        return 1
    return 0


def _read_checkpoint(path: Path) -> Checkpoint:
    try:
        return Checkpoint.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"--checkpoint {path}: cannot read: {exc.strerror}") from None


def _checkpoint(args: argparse.Namespace, store: AuditStore, now: datetime) -> int:
    report, checkpoint = make_checkpoint(store, clock=lambda: now)
    if checkpoint is None:
        print(f"raygate audit: no checkpoint; chain broken at {report.problem}", file=sys.stderr)
        return 1
    _write(args.out, checkpoint.dumps())
    return 0


def _adopt_key(args: argparse.Namespace, store: AuditStore, now: datetime) -> int:
    report = adopt_key(store, cli_actor())
    if report.problem is not None:
        print(f"raygate audit: not adopted; chain broken at {report.problem}", file=sys.stderr)
        return 1
    done = []
    if report.anchor_authenticated:
        done.append("the anchor now carries its MAC")
    if report.adoption_seq is not None:
        done.append(f"keyed record {report.adoption_seq} covers every record before it")
    print("chain keyed: " + ("; ".join(done) if done else "nothing to do, it already was"))
    return 0


def _rekey(args: argparse.Namespace, store: AuditStore, now: datetime) -> int:
    report = rekey(store)
    if report.resealed:
        store.db.reclaim(["audit_records"])  # no clear text left behind in free pages
    record_now(store, admin_record(cli_actor(), "audit.rekey", f"data_key:{report.key_id}"))
    print(f"resealed {report.resealed} records under data key {report.key_id}")
    if report.unreadable:
        shown = ", ".join(str(seq) for seq in report.unreadable[:20])
        print(f"content that did not open, left as found: seq {shown}", file=sys.stderr)
        return 1
    return 0


def _write(out: str, text: str) -> None:
    if out == "-":
        sys.stdout.write(text)
        return
    path = Path(out)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    print(f"wrote {path}", file=sys.stderr)


def _head(text: str) -> ChainPoint:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise ValueError(f"--expect-head {text!r}: expected SEQ:HASH as verify prints it")
    return ChainPoint(seq=int(seq), hash=digest)


def _filter(args: argparse.Namespace, now: datetime) -> AuditFilter:
    return AuditFilter.parse({name: getattr(args, name) for name in FILTER_FIELDS}, now)


def _query(args: argparse.Namespace, store: AuditStore, now: datetime) -> int:
    where = _filter(args, now)
    if args.group_by:
        rows = summarize(store, where, args.group_by)
        _print_summary(rows, args.group_by, args.format, sys.stdout)
        return 0
    page = list_records(store, where, limit=args.limit, cursor=args.cursor)
    _print_page(page, args.format, sys.stdout)
    return 0


def _print_summary(rows: list[SummaryRow], by: str, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(json.dumps([r.model_dump() for r in rows], indent=2) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([by, "count", "tokens_in", "tokens_out", "cost_usd", "cost_avoided_usd"])
        for r in rows:
            writer.writerow(
                [
                    r.key or "",
                    r.count,
                    r.tokens_in,
                    r.tokens_out,
                    f"{r.cost_usd:.6f}",
                    f"{r.cost_avoided_usd:.6f}",
                ]
            )
        return
    out.write(
        f"{by:24} {'count':>8} {'tokens_in':>12} {'tokens_out':>12} {'cost_usd':>12}"
        f" {'avoided_usd':>12}\n"
    )
    for r in rows:
        key = r.key if r.key is not None else "(none)"
        out.write(
            f"{key:24} {r.count:>8} {r.tokens_in:>12} {r.tokens_out:>12} {r.cost_usd:>12.4f}"
            f" {r.cost_avoided_usd:>12.4f}\n"
        )


def _print_page(page: RecordPage, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        out.write(page.model_dump_json(indent=2) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(schema.COLUMNS)
        for record in page.records:
            writer.writerow(["" if v is None else v for v in schema.to_row(record)])
        return
    out.write(
        f"{'seq':>7} {'time (UTC)':19} {'user':16} {'department':12} {'model':16} "
        f"{'status':>6} {'tokens':>11} {'cost_usd':>9}  topics / actions\n"
    )
    for r in page.records:
        who = r.principal
        tokens = f"{r.tokens_in or 0}/{r.tokens_out or 0}"
        tags = ",".join(r.topics) + (" / " + ",".join(r.actions) if r.actions else "")
        out.write(
            f"{r.seq or 0:>7} {r.ts:%Y-%m-%d %H:%M:%S} {(who.user_id if who else '-'):16.16} "
            f"{((who.department or '-') if who else '-'):12.12} {(r.model_requested or '-'):16.16} "
            f"{r.status or '-':>6} {tokens:>11} {r.cost_usd or 0:>9.4f}  {tags}\n"
        )
    if page.next_cursor:
        out.write(f"more: --cursor {page.next_cursor}\n")


def _export(args: argparse.Namespace, store: AuditStore, now: datetime) -> int:
    where = _filter(args, now)
    total = count_records(store, where) if draws(args.progress) else None
    with progress_bar("export", total=total, unit="record", show=args.progress) as advance:
        if args.out == "-":
            write_export(store, where, args.format, sys.stdout, progress=advance)
            return 0
        path = Path(args.out)
        partial = path.with_name(path.name + ".partial")
        # Written aside and renamed, so a failed export never leaves a truncated file behind.
        with partial.open("w", encoding="utf-8", newline="") as out:
            write_export(store, where, args.format, out, progress=advance)
    partial.replace(path)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _prune(args: argparse.Namespace, store: AuditStore, now: datetime) -> int:
    report = prune(store, parse_age(args.older_than), clock=lambda: now)
    if report.problem is not None:
        print(f"raygate audit: not pruned; chain broken at {report.problem}", file=sys.stderr)
        return 1
    print(
        f"pruned {report.deleted} records; the chain now starts after seq {report.anchor.seq} "
        f"({report.anchor.hash})"
    )
    return 0
