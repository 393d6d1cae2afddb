"""`GET /admin/whoami`: who the admin credential belongs to, the admin roles it holds and what
they may do; for any admin role (the console signs in with it and shows only the pages the
roles allow)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from gateway.api.admin import AdminGate
from gateway.api.openapi import answers
from gateway.identity.roles import PERMISSIONS, AdminRole, Permission


class AdminIdentity(BaseModel):
    """The administrator behind a credential."""

    user: str
    auth_method: str = Field(description="e.g. admin_key, api_key, oidc, ldap")
    roles: list[AdminRole]
    granted_by: list[str] = Field(description='what granted the roles, e.g. "group:secops"')
    permissions: list[Permission] = Field(description="what the roles allow, e.g. audit.read")


def whoami_routes(gate: AdminGate) -> APIRouter:
    """The whoami route (any admin role)."""
    router = APIRouter()

    @router.get("/admin/whoami", responses=answers(AdminIdentity))
    async def whoami(request: Request) -> Response:
        admin = await gate(request, None, action="admin.whoami")
        identity = AdminIdentity(
            user=admin.user_id,
            auth_method=admin.principal.auth_method,
            roles=list(admin.roles),
            granted_by=list(admin.granted_by),
            permissions=[p for p in PERMISSIONS if admin.may(p)],
        )
        return JSONResponse(identity.model_dump(mode="json"))

    return router
