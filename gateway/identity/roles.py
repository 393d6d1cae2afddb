"""Admin roles and what each may do: the one table every admin route is checked against.

Three roles instead of one shared admin key:

- `admin`: everything, including keys that carry an admin role, changes to the cache and
  the upstreams' keys;
- `auditor`: read-only: the audit trail (records, summaries, exports, verification) and the
  operational reports (routing, providers, cache statistics), and policy dry runs;
- `key_manager`: API keys and their owners (issue, list, rotate, revoke), but never a key that
  carries an admin role, so that managing keys cannot mint an administrator.

An admin route names the permission it needs (`"audit.read"`); `ROLE_PERMISSIONS` says which
roles hold it. A permission that is not in the table is held by nobody.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, get_args

AdminRole = Literal["admin", "auditor", "key_manager"]
ADMIN_ROLES: tuple[AdminRole, ...] = get_args(AdminRole)

Permission = Literal[
    "audit.read",
    "audit.write",
    "reports.read",
    "policy.check",
    "keys.read",
    "keys.write",
    "users.read",
    "users.write",
    "admin_keys.write",
    "cache.write",
    "providers.write",
]
PERMISSIONS: tuple[Permission, ...] = get_args(Permission)

ROLE_PERMISSIONS: Mapping[AdminRole, frozenset[Permission]] = {
    "admin": frozenset(PERMISSIONS),
    "auditor": frozenset({"audit.read", "reports.read", "policy.check"}),
    "key_manager": frozenset({"keys.read", "keys.write", "users.read", "users.write"}),
}


def roles_holding(permission: Permission) -> tuple[AdminRole, ...]:
    """The roles that hold `permission`, in `ADMIN_ROLES` order."""
    return tuple(role for role in ADMIN_ROLES if permission in ROLE_PERMISSIONS[role])


def is_admin_role(name: str) -> bool:
    """Whether `name` is one of the admin roles."""
    return name in ADMIN_ROLES
