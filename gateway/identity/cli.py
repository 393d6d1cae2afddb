"""`raygate keys ...`: issue, list, rotate and revoke API keys against the gateway's database.

The commands write to the same database the gateway reads (`storage.url`), so they work with
the gateway up or down; a revoked key is refused by the next request. Issuing, rotating and
revoking are recorded in the audit trail (when it is on), with the account that ran them.

`raygate keys new-secret` prints a fresh `id:secret` entry for a keyring (`RAYGATE_AUDIT_KEY`,
`RAYGATE_DATA_KEY`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from gateway.audit.actions import admin_record, cli_actor, ensure_recordable, record_now
from gateway.audit.store import AuditStore
from gateway.config import GatewayConfig
from gateway.errors import GatewayError
from gateway.identity.admin import key_action
from gateway.identity.keys import ApiKey, KeyStore
from gateway.identity.principal import Principal
from gateway.identity.roles import ADMIN_ROLES
from gateway.identity.users import UserStore
from gateway.storage import Database
from gateway.storage.keyring import new_secret

LoadConfig = Callable[[argparse.Namespace], GatewayConfig]


def add_key_commands(commands: Any, load: LoadConfig) -> None:
    """Add `keys` with its subcommands to the `raygate` parser."""
    keys = commands.add_parser("keys", help="issue, list, rotate and revoke API keys")
    keys.add_argument("--config", default=None, help="YAML config (RAYGATE_CONFIG)")
    sub = keys.add_subparsers(required=True, metavar="ACTION")

    issue = sub.add_parser("issue", help="issue a key; the secret is printed once")
    issue.add_argument("--user", required=True, help="the owner's user id")
    issue.add_argument("--name", default="", help="what the key is for")
    issue.add_argument("--expires", help="e.g. 30d, 12h, or a date 2027-01-31")
    issue.add_argument("--models", help="comma-separated aliases (patterns) the key may use")
    for attr in ("email", "display-name", "department", "title"):
        issue.add_argument(f"--{attr}")
    issue.add_argument("--group", action="append", help="owner's group (repeat)")
    issue.add_argument("--role", action="append", help="owner's role (repeat)")
    issue.add_argument(
        "--admin-role",
        choices=ADMIN_ROLES,
        help="an admin key with this role: it opens the admin routes only",
    )
    issue.set_defaults(run=lambda a: _run(a, load, _issue))

    listing = sub.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--user")
    listing.add_argument("--all", action="store_true", help="include revoked and expired")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=lambda a: _run(a, load, _list))

    rotate = sub.add_parser("rotate", help="replace a key; the old one stops after --grace")
    rotate.add_argument("key_id")
    rotate.add_argument("--grace", default="0s", help="how long the old key keeps working")
    rotate.set_defaults(run=lambda a: _run(a, load, _rotate))

    revoke = sub.add_parser("revoke", help="revoke a key now")
    revoke.add_argument("key_id")
    revoke.set_defaults(run=lambda a: _run(a, load, _revoke))

    fresh = sub.add_parser("new-secret", help="print a new `id:secret` for a keyring")
    fresh.add_argument("--id", default=None, help="the key id (default: today's date)")
    fresh.set_defaults(run=_new_secret)


Record = Callable[[str, str], None]
"""Records an admin action (`keys.revoke`, `key:<id>`) in the audit trail."""


def _run(
    args: argparse.Namespace,
    load: LoadConfig,
    action: Callable[[argparse.Namespace, KeyStore, UserStore, Record], int],
) -> int:
    config = load(args)
    if not config.auth.key_secret:
        print(
            "raygate: issued keys are off: auth.key_secret is empty (the configs shipped read "
            "it from RAYGATE_KEY_SECRET: set it to the gateway's key secret; `raygate up` "
            "keeps a local one in .raygate/key_secret)",
            file=sys.stderr,
        )
        return 2
    db = Database(config.storage.url)
    try:
        record = recorder(db, config)
        return action(args, KeyStore(db, config.auth.key_secret), UserStore(db), record)
    except GatewayError as exc:
        print(f"raygate: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"raygate: {exc}", file=sys.stderr)
        return 2
    finally:
        db.close()


def recorder(db: Database, config: GatewayConfig) -> Record:
    """Appends admin actions to the trail; checks first that it can (ValueError otherwise),
    so that nothing is changed that could not be recorded."""
    if not config.audit.enabled:
        return lambda action, target: None
    store = AuditStore.for_gateway(db, config)
    ensure_recordable(store)
    actor = cli_actor()

    def record(action: str, target: str) -> None:
        record_now(store, admin_record(actor, action, target))

    return record


def _new_secret(args: argparse.Namespace) -> int:
    key_id = args.id or datetime.now(UTC).strftime("%Y%m%d")
    print(f"{key_id}:{new_secret()}")
    return 0


def _issue(args: argparse.Namespace, keys: KeyStore, users: UserStore, record: Record) -> int:
    attributes = (args.email, args.display_name, args.department, args.title, args.group, args.role)
    if any(a is not None for a in attributes) or users.get(args.user) is None:
        users.upsert(
            Principal(
                user_id=args.user,
                auth_method="local",
                email=args.email,
                display_name=args.display_name,
                department=args.department,
                title=args.title,
                groups=tuple(args.group or ()),
                roles=tuple(args.role or ()),
            )
        )
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    expires = parse_expiry(args.expires) if args.expires else None
    issued = keys.issue(
        args.user, name=args.name, expires_at=expires, models=models, admin_role=args.admin_role
    )
    record(key_action("issue", args.admin_role), f"key:{issued.key.key_id}")
    role = f", admin role {args.admin_role}: admin routes only" if args.admin_role else ""
    print(f"key id: {issued.key.key_id}  (user {issued.key.user_id}{role})")
    print(f"secret: {issued.secret}")
    print("The secret is shown only now; raygate stores a keyed hash of it.")
    return 0


def _list(args: argparse.Namespace, keys: KeyStore, users: UserStore, record: Record) -> int:
    found = keys.list(user_id=args.user, include_inactive=args.all)
    now = time.time()
    if args.json:
        print(json.dumps([k.as_dict(now) for k in found], indent=2))
        return 0
    print(f"{'id':14} {'user':20} {'state':9} {'works until':20} {'hint':22} name")
    for key in found:
        print(
            f"{key.key_id:14} {key.user_id:20} {key.state(now):9} {_until(key, now):20} "
            f"{key.hint + '...':22} {key.name}"
        )
    return 0


def _rotate(args: argparse.Namespace, keys: KeyStore, users: UserStore, record: Record) -> int:
    issued = keys.rotate(args.key_id, grace_s=parse_duration(args.grace))
    record(key_action("rotate", issued.key.admin_role), f"key:{args.key_id}->{issued.key.key_id}")
    print(f"new key id: {issued.key.key_id}  (replaces {args.key_id})")
    print(f"secret: {issued.secret}")
    return 0


def _revoke(args: argparse.Namespace, keys: KeyStore, users: UserStore, record: Record) -> int:
    key = keys.revoke(args.key_id)
    record(key_action("revoke", key.admin_role), f"key:{key.key_id}")
    print(f"revoked {key.key_id} (user {key.user_id})")
    return 0


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """`90s`, `15m`, `12h`, `30d` in seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30d, 12h, 15m or 90s")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def parse_expiry(text: str, *, now: float | None = None) -> float:
    """A duration from now (`30d`) or a UTC date/time (`2027-01-31`), as a Unix time."""
    if _DURATION.match(text.strip()):
        return (time.time() if now is None else now) + parse_duration(text)
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30d) nor a date (2027-01-31)") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _until(key: ApiKey, now: float) -> str:
    """When the key stops working: its grace end while it is being rotated, else its expiry."""
    ends = [t for t in (key.expires_at, key.grace_until if key.replaced_by else None) if t]
    if key.state(now) not in ("active", "rotating"):
        return "-"
    if not ends:
        return "no end"
    return datetime.fromtimestamp(min(ends), UTC).strftime("%Y-%m-%d %H:%M UTC")
