"""The audit trail's tables and the mapping between a record and its row.

One row per record in `audit_records`, every field in its own column (lists as canonical JSON
text), so the hash can be recomputed from what is stored and nothing else. Groups, topics and
policy actions are also written to side tables keyed by `seq`: indexed equality lookups that
read the same on SQLite and PostgreSQL, where JSON operators differ. The side tables are not
hashed; `verify` checks that they agree with the hashed columns.

`audit_chain` holds two rows: `head` (the last seq and hash, updated in the same transaction as
every append, so a truncated tail is detected) and `anchor` (the seq and hash the remaining
chain starts from, moved forward by retention; on a keyed chain with its MAC in `mac`, so that
it cannot be moved by anyone without the key).

`content_key` is storage, not record: the id of the data key that sealed the row's `prompt`
and `response` (NULL: stored in clear). The hash covers the clear text, so resealing under a
new key (`raygate audit rekey`) leaves the chain as it was.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.audit.chain import GENESIS
from gateway.audit.record import AuditPrincipal, AuditRecord

COLUMNS: tuple[str, ...] = (
    "seq",
    "id",
    "ts",
    "request_id",
    "user_id",
    "email",
    "department",
    "principal_groups",
    "principal_roles",
    "auth_method",
    "client_address",
    "route",
    "model_requested",
    "route_taken",
    "cache_phase",
    "similarity",
    "decisions",
    "topics",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "cost_avoided_usd",
    "latency_ms",
    "status",
    "error_code",
    "prompt_mode",
    "prompt",
    "response_mode",
    "response",
    "principal_key_id",
    "admin_action",
    "admin_target",
    "chain_key",
    "prev_hash",
    "hash",
)
SELECT_COLUMNS = ", ".join(f"r.{c}" for c in COLUMNS)
SELECT_STORED = SELECT_COLUMNS + ", r.content_key"
"""A stored row: the record's columns, then `content_key` (see the module docstring)."""
CONTENT_COLUMNS = ("prompt", "response")
INSERT_RECORD = (
    f"INSERT INTO audit_records ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
INSERT_STORED = (
    f"INSERT INTO audit_records ({', '.join(COLUMNS)}, content_key) "
    f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"
)

# Side tables: (table, value column). Each answers "which records carry this value?".
INDEX_TABLES: tuple[tuple[str, str], ...] = (
    ("audit_groups", "name"),
    ("audit_topics", "topic"),
    ("audit_actions", "action"),
)

# Indexes on added columns: created once the columns exist on older tables too.
AFTER_ADDED_COLUMNS: tuple[str, ...] = (
    "CREATE INDEX IF NOT EXISTS audit_records_admin ON audit_records (admin_action)",
)

# Columns added after the first release: (table, column, type), added to older tables on open.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("audit_records", "cost_avoided_usd", "DOUBLE PRECISION"),
    ("audit_records", "principal_key_id", "TEXT"),
    ("audit_records", "admin_action", "TEXT"),
    ("audit_records", "admin_target", "TEXT"),
    ("audit_records", "chain_key", "TEXT"),
    ("audit_records", "content_key", "TEXT"),
    ("audit_chain", "mac", "TEXT"),
)

DDL: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS audit_records (
        seq BIGINT PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        ts TEXT NOT NULL,
        request_id TEXT,
        user_id TEXT,
        email TEXT,
        department TEXT,
        principal_groups TEXT,
        principal_roles TEXT,
        auth_method TEXT,
        client_address TEXT,
        route TEXT,
        model_requested TEXT,
        route_taken TEXT,
        cache_phase TEXT,
        similarity DOUBLE PRECISION,
        decisions TEXT NOT NULL,
        topics TEXT NOT NULL,
        tokens_in BIGINT,
        tokens_out BIGINT,
        cost_usd DOUBLE PRECISION,
        cost_avoided_usd DOUBLE PRECISION,
        latency_ms DOUBLE PRECISION,
        status INTEGER,
        error_code TEXT,
        prompt_mode TEXT,
        prompt TEXT,
        response_mode TEXT,
        response TEXT,
        principal_key_id TEXT,
        admin_action TEXT,
        admin_target TEXT,
        chain_key TEXT,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL,
        content_key TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS audit_records_ts ON audit_records (ts)",
    "CREATE INDEX IF NOT EXISTS audit_records_user ON audit_records (user_id)",
    "CREATE INDEX IF NOT EXISTS audit_records_department ON audit_records (department)",
    "CREATE INDEX IF NOT EXISTS audit_records_model ON audit_records (model_requested)",
    *(
        statement
        for table, column in INDEX_TABLES
        for statement in (
            f"""CREATE TABLE IF NOT EXISTS {table} (
                seq BIGINT NOT NULL,
                {column} TEXT NOT NULL,
                PRIMARY KEY (seq, {column})
            )""",
            f"CREATE INDEX IF NOT EXISTS {table}_by_value ON {table} ({column}, seq)",
        )
    ),
    """CREATE TABLE IF NOT EXISTS audit_chain (
        name TEXT PRIMARY KEY,
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL,
        mac TEXT
    )""",
    f"INSERT INTO audit_chain (name, seq, hash) VALUES ('head', 0, '{GENESIS}') "
    "ON CONFLICT (name) DO NOTHING",
    f"INSERT INTO audit_chain (name, seq, hash) VALUES ('anchor', 0, '{GENESIS}') "
    "ON CONFLICT (name) DO NOTHING",
)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def to_row(record: AuditRecord) -> tuple[Any, ...]:
    """The record's column values, in `COLUMNS` order."""
    return row_from_json(record.model_dump(mode="json"))


def row_from_json(body: dict[str, Any]) -> tuple[Any, ...]:
    """The column values of a record's JSON form (`model_dump(mode="json")`)."""
    who = body["principal"]
    if who is None:
        principal: tuple[Any, ...] = (None,) * 6
        key_id = None
    else:
        key_id = who.get("key_id")
        principal = (
            who["user_id"],
            who["email"],
            who["department"],
            _json(who["groups"]),
            _json(who["roles"]),
            who["auth_method"],
        )
    return (
        body["seq"],
        body["id"],
        body["ts"],
        body["request_id"],
        *principal,
        body["client_address"],
        body["route"],
        body["model_requested"],
        body["route_taken"],
        body["cache_phase"],
        body["similarity"],
        _json(body["decisions"]),
        _json(body["topics"]),
        body["tokens_in"],
        body["tokens_out"],
        body["cost_usd"],
        body["cost_avoided_usd"],
        body["latency_ms"],
        body["status"],
        body["error_code"],
        body["prompt_mode"],
        body["prompt"],
        body["response_mode"],
        body["response"],
        key_id,
        body.get("admin_action"),
        body.get("admin_target"),
        body.get("chain_key"),
        body["prev_hash"],
        body["hash"],
    )


def from_row(row: tuple[Any, ...]) -> AuditRecord:
    """The record a row holds; raises ValueError when the row is not a valid record."""
    values = dict(zip(COLUMNS, row, strict=True))
    principal = None
    if values["user_id"] is not None:
        principal = AuditPrincipal(
            user_id=values["user_id"],
            auth_method=values["auth_method"],
            email=values["email"],
            department=values["department"],
            groups=json.loads(values["principal_groups"] or "[]"),
            roles=json.loads(values["principal_roles"] or "[]"),
            key_id=values["principal_key_id"],
        )
    return AuditRecord.model_validate(
        {
            **{k: v for k, v in values.items() if k not in _PRINCIPAL_COLUMNS},
            "principal": principal,
            "decisions": json.loads(values["decisions"]),
            "topics": json.loads(values["topics"]),
        }
    )


_PRINCIPAL_COLUMNS = frozenset(
    (
        "user_id",
        "email",
        "department",
        "principal_groups",
        "principal_roles",
        "auth_method",
        "principal_key_id",
    )
)


def index_values(record: AuditRecord) -> dict[str, list[str]]:
    """What each side table holds for `record`, keyed by table name."""
    groups = record.principal.groups if record.principal else []
    return {
        "audit_groups": list(dict.fromkeys(groups)),
        "audit_topics": list(dict.fromkeys(record.topics)),
        "audit_actions": record.actions,
    }
