"""`raygate providers ...`: the configured upstreams, and their keys set at run time.

    raygate providers list [--json]
    raygate providers set-key NAME [--from-env VARIABLE]   # else the key is read from stdin
    raygate providers remove-key NAME

They work on the gateway's database (`storage.url`) with the config's data key, so the gateway
may be up or down: running replicas use a new key within `routing.key_sync_interval_s`. A key
is never taken from the command line (it would stay in the shell's history). Setting and
removing a key are recorded in the audit trail (when it is on) with the account that ran them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.audit.actions import cli_actor
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.identity.cli import Record, recorder
from gateway.providers.keys import ProviderKeyStore
from gateway.storage import Database

LoadConfig = Callable[[argparse.Namespace], GatewayConfig]
Action = Callable[[argparse.Namespace, GatewayConfig, ProviderKeyStore, Record], int]


def add_provider_commands(commands: Any, load: LoadConfig) -> None:
    """Add `providers` and its subcommands to the `raygate` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None, help="YAML config (RAYGATE_CONFIG)")
    providers = commands.add_parser("providers", help="upstreams and their run-time keys")
    sub = providers.add_subparsers(required=True, metavar="ACTION")

    listing = sub.add_parser("list", parents=[common], help="each provider: on or off, and why")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=lambda a: _run(a, load, _list))

    setting = sub.add_parser("set-key", parents=[common], help="set or rotate a provider's key")
    setting.add_argument("name", help="the provider, as the config names it")
    setting.add_argument("--from-env", metavar="VARIABLE", help="read the key from this variable")
    setting.set_defaults(run=lambda a: _run(a, load, _set))

    removing = sub.add_parser("remove-key", parents=[common], help="back to the config's key")
    removing.add_argument("name", help="the provider, as the config names it")
    removing.set_defaults(run=lambda a: _run(a, load, _remove))


def _run(args: argparse.Namespace, load: LoadConfig, action: Action) -> int:
    try:
        config = load(args)
        db = Database(config.storage.url)
        try:
            store = ProviderKeyStore.from_config(config, db)
            return action(args, config, store, recorder(db, config))
        finally:
            db.close()
    except GatewayError as exc:
        print(f"raygate providers: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"raygate providers: {exc}", file=sys.stderr)
        return 2


def _known(config: GatewayConfig, name: str) -> None:
    if name not in config.providers:
        known = ", ".join(sorted(config.providers)) or "none"
        raise ValueError(f"no provider {name!r} in the config (configured: {known})")


def _list(
    args: argparse.Namespace, config: GatewayConfig, store: ProviderKeyStore, record: Record
) -> int:
    stored = {info.provider: info for info in store.list()}
    keyed = config.with_provider_keys(store.keys()) if stored else config
    rows = []
    for name, provider in keyed.providers.items():
        info = stored.get(name)
        rows.append(
            {
                "name": name,
                "kind": provider.resolved_preset.kind,
                "enabled": provider.disabled_reason() is None,
                "disabled_reason": provider.disabled_reason(),
                "runtime_key": info.as_dict() if info else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'PROVIDER':<20} {'KIND':<16} {'STATE':<9} KEY")
    for name, provider in keyed.providers.items():
        info = stored.get(name)
        reason = provider.disabled_reason()
        if info is not None:
            when = datetime.fromtimestamp(info.updated_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            key = f"set at run time {info.hint} ({when}, {info.updated_by})"
        else:
            key = reason or "from the config"
        kind = provider.resolved_preset.kind
        print(f"{name:<20} {kind:<16} {'off' if reason else 'on':<9} {key}")
    return 0


def _set(
    args: argparse.Namespace, config: GatewayConfig, store: ProviderKeyStore, record: Record
) -> int:
    _known(config, args.name)
    if args.from_env:
        key = os.environ.get(args.from_env, "")
        if not key:
            raise ValueError(f"{args.from_env} is not set")
    else:
        if sys.stdin.isatty():
            print(f"API key for {args.name} (then Enter): ", end="", file=sys.stderr, flush=True)
        key = sys.stdin.readline()
    info = store.set(args.name, key, by=cli_actor().user_id)
    record("providers.set_key", f"provider:{args.name}")
    interval = config.routing.key_sync_interval_s
    print(f"{args.name}: key {info.hint} set; running replicas use it within {interval:g} s")
    return 0


def _remove(
    args: argparse.Namespace, config: GatewayConfig, store: ProviderKeyStore, record: Record
) -> int:
    _known(config, args.name)
    if not store.remove(args.name):
        print(f"raygate providers: no key was set at run time for {args.name}", file=sys.stderr)
        return 1
    record("providers.remove_key", f"provider:{args.name}")
    print(f"{args.name}: the config's key applies again")
    return 0
