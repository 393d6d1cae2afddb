"""Who may administer the gateway, and with which role (`gateway.identity.roles`).

An admin is an `AdminPrincipal`: the person (a `Principal`) and the admin roles they hold,
with what granted each. Roles come from exactly these sources:

- the break-glass admin key (`auth.admin_key`): role `admin`;
- an issued admin key (`raygate keys issue --admin-role auditor`): the role stored with it;
- a directory group or an identity-provider role, mapped in `auth.admin_roles`: groups of an
  LDAP login, of an OIDC token's groups claim or of a trusted proxy's groups header (when the
  proxy is configured to set it), roles of an OIDC token's roles claim.

Never from what an administrator typed about a key's owner (the local `users` table): whoever
may issue keys could otherwise mint an admin by writing a group name. Never from the local
developer key, and never from an ordinary issued key, whatever its owner's groups.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field

from gateway.errors import PermissionDenied
from gateway.identity.principal import Principal
from gateway.identity.roles import (
    ADMIN_ROLES,
    ROLE_PERMISSIONS,
    AdminRole,
    Permission,
    roles_holding,
)
from gateway.section import ConfigSection

# Authentication methods whose groups and roles come from the organisation's directory or
# identity provider, and so may grant admin roles.
_DIRECTORY_METHODS = frozenset({"ldap", "oidc", "trusted_header"})


class RoleGrant(ConfigSection):
    """Who holds one admin role."""

    groups: list[str] = Field(
        default_factory=list,
        description="directory groups (LDAP, the OIDC groups claim, a proxy's groups header)",
    )
    roles: list[str] = Field(
        default_factory=list, description="identity-provider roles (the OIDC roles claim)"
    )


class AdminRolesConfig(ConfigSection):
    """`auth.admin_roles`: the directory groups and identity-provider roles of each admin role.

    Example: `admin: {groups: [gateway-admins]}`, `auditor: {groups: [compliance],
    roles: [raygate-auditor]}`, `key_manager: {groups: [platform-team]}`.
    """

    admin: RoleGrant = Field(default_factory=RoleGrant, description="everything")
    auditor: RoleGrant = Field(
        default_factory=RoleGrant, description="read-only: audit trail, reports, policy dry runs"
    )
    key_manager: RoleGrant = Field(
        default_factory=RoleGrant, description="API keys and users (never admin keys)"
    )

    def grant(self, role: AdminRole) -> RoleGrant:
        """The grant of `role`."""
        grant: RoleGrant = getattr(self, role)
        return grant


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """An authenticated administrator: who, which admin roles, and what granted each."""

    principal: Principal
    roles: tuple[AdminRole, ...]
    granted_by: tuple[str, ...]  # e.g. "admin_key", "key:3f2a...", "group:secops", "role:x"

    def may(self, permission: Permission) -> bool:
        """Whether any of the roles holds `permission`."""
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles)

    @property
    def user_id(self) -> str:
        """Who, for logs and audit records."""
        return self.principal.user_id


def authorize(admin: AdminPrincipal, permission: Permission) -> None:
    """PermissionDenied (403, `insufficient_admin_role`) unless `admin` may `permission`."""
    if not admin.may(permission):
        needed = " or ".join(roles_holding(permission)) or "no role"
        raise PermissionDenied(
            f"This needs the {needed} role ({permission}); you have "
            f"{', '.join(admin.roles) or 'no admin role'}.",
            code="insufficient_admin_role",
        )


def key_permission(admin_role: str | None) -> Permission:
    """What issuing, rotating or revoking a key with `admin_role` needs: `admin_keys.write`
    for a key that carries an admin role, `keys.write` otherwise."""
    return "admin_keys.write" if admin_role is not None else "keys.write"


def key_action(verb: str, admin_role: str | None) -> str:
    """The audited name of a key operation: `keys.revoke`, or `admin_keys.revoke` for a key
    that carries an admin role."""
    return f"{'admin_keys' if admin_role is not None else 'keys'}.{verb}"


def directory_admin(principal: Principal, config: AdminRolesConfig) -> AdminPrincipal | None:
    """The admin roles `config` gives a principal authenticated by the directory or the
    identity provider; None when it gives none (or the principal came from elsewhere)."""
    if principal.auth_method not in _DIRECTORY_METHODS:
        return None
    roles: list[AdminRole] = []
    granted: list[str] = []
    for role in ADMIN_ROLES:
        grant = config.grant(role)
        by = [f"group:{g}" for g in grant.groups if g in principal.groups]
        by += [f"role:{r}" for r in grant.roles if r in principal.roles]
        if by:
            roles.append(role)
            granted.extend(by)
    if not roles:
        return None
    return AdminPrincipal(principal, tuple(roles), tuple(dict.fromkeys(granted)))
