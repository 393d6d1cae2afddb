"""Admin actions in the audit trail: who did what to which object, as chained records.

Every admin action (a key issued, rotated or revoked, the trail exported, verified, pruned,
rekeyed, a cache entry deleted) leaves a record whose `principal` is the actor, with the admin
roles they acted under, `admin_action` the permission-style name of the action and
`admin_target` the object. The HTTP admin routes record through the gateway's `AuditWriter`;
the CLI, which has no running gateway, appends directly (`record_now`).
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence

from gateway.audit import schema
from gateway.audit.record import AuditPrincipal, AuditRecord
from gateway.audit.store import AuditStore
from gateway.identity.principal import Principal


def admin_record(
    actor: AuditPrincipal,
    action: str,
    target: str | None = None,
    *,
    status: int = 200,
    error_code: str | None = None,
    route: str | None = None,
    client_address: str | None = None,
    request_id: str | None = None,
) -> AuditRecord:
    """The record of one admin action by `actor` (refused ones too: pass their status)."""
    return AuditRecord(
        request_id=request_id,
        principal=actor,
        client_address=client_address,
        route=route,
        status=status,
        error_code=error_code,
        admin_action=action,
        admin_target=target,
        prompt_mode="none",
        response_mode="none",
    )


def admin_actor(principal: Principal, admin_roles: Sequence[str]) -> AuditPrincipal:
    """The audited actor of an admin action: who (their groups and the key they used
    included), with the admin roles they acted under as `roles`.

    For an `AdminPrincipal` from `Authenticator.admin`: `admin_actor(admin.principal, admin.roles)`.
    """
    return AuditPrincipal.of(principal).model_copy(update={"roles": list(admin_roles)})


def cli_actor(roles: Sequence[str] = ("admin",)) -> AuditPrincipal:
    """The actor of a `raygate` CLI command: the operating-system account that ran it.

    The CLI acts with the database's and the keys' own access, which is the admin's.
    """
    try:
        account = getpass.getuser()
    except (KeyError, OSError):
        account = "unknown"
    return AuditPrincipal(user_id=f"cli:{account}", auth_method="cli", roles=list(roles))


def record_now(store: AuditStore, record: AuditRecord) -> AuditRecord:
    """Append one record at once (no writer queue): for the CLI. Returns it chained.

    Refuses (ValueError) to append an unkeyed record to a keyed chain: see `ensure_recordable`.
    """
    ensure_recordable(store)
    return store.append([record])[0]


def ensure_recordable(store: AuditStore) -> None:
    """ValueError if `store` would append an unkeyed record to a keyed chain: that would read
    as tampering at the next verification; the command needs the chain key instead."""
    if not store.keyed and newest_is_keyed(store):
        raise ValueError(
            "the audit chain is keyed: set audit.chain_key (RAYGATE_AUDIT_KEY) to record this"
        )


def newest_is_keyed(store: AuditStore) -> bool:
    """Whether the chain's newest record was sealed with a chain key."""
    state = store.chain_state()
    if state.head.seq == state.anchor.seq:
        return False
    rows = store.rows(after_seq=state.head.seq - 1, through_seq=state.head.seq, limit=1)
    return bool(rows) and rows[0][_CHAIN_KEY] is not None


_CHAIN_KEY = schema.COLUMNS.index("chain_key")
