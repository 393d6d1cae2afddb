"""The admin API under `/admin`: one `APIRouter` per area, each given what it needs and the
`AdminGate` that lets an administrator in.

Admins are the break-glass admin key, issued admin keys, or directory / SSO users whose
groups or roles map to an admin role (`admin`, `auditor`, `key_manager`); each route needs a
permission of theirs (`gateway.identity.roles`). Every admin request, refused ones included,
leaves one audit record naming its actor, the action and its target.
"""

from __future__ import annotations

from fastapi import Request

from gateway.api.exchange import Exchange
from gateway.identity.admin import AdminPrincipal, authorize
from gateway.identity.roles import Permission
from gateway.identity.service import Identity


class AdminGate:
    """Lets an administrator with a permission in, and notes the action for the audit."""

    def __init__(self, identity: Identity) -> None:
        self._identity = identity

    async def __call__(
        self,
        request: Request,
        needs: Permission | None,
        *,
        action: str | None = None,
        target: str | None = None,
    ) -> AdminPrincipal:
        """The admin behind the request's credentials, allowed to do `needs` (None: any admin
        role will do); raises 401 (no admin credential) or 403 (no role that holds `needs`).
        `action` (default: the permission) and `target` name what the request does, in its
        audit record."""
        exchange: Exchange = request.state.exchange
        exchange.admin_action = action or needs
        exchange.admin_target = target
        admin = await self._identity.authenticator.admin(request.headers, exchange.client_address)
        exchange.admin = admin  # a refusal below is recorded with its actor
        if needs is not None:
            authorize(admin, needs)
        return admin
