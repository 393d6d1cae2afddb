"""Admin API for issued keys and their owners, under `/admin` (admin key only).

POST   /admin/keys               issue (the secret is in this answer and nowhere else)
GET    /admin/keys               list (?user=ID, ?all=true for revoked/expired too)
POST   /admin/keys/{id}/rotate   a replacement key; the old one stops after grace_seconds
DELETE /admin/keys/{id}          revoke
GET    /admin/users              local users (key owners)
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.admin import AdminGate
from gateway.api.errors import validated
from gateway.api.openapi import answers, request_body
from gateway.errors import InvalidRequest
from gateway.identity.admin import authorize, key_action, key_permission
from gateway.identity.keys import KeyStore
from gateway.identity.principal import Principal
from gateway.identity.roles import AdminRole
from gateway.identity.service import Identity
from gateway.identity.users import UserStore

_M = TypeVar("_M", bound=BaseModel)


class IssueKey(BaseModel):
    """Body of `POST /admin/keys`: the key's owner and limits."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(min_length=1)
    name: str = ""
    expires_in_days: float | None = Field(None, gt=0)
    models: list[str] | None = None
    email: str | None = None
    display_name: str | None = None
    department: str | None = None
    title: str | None = None
    groups: list[str] | None = None
    roles: list[str] | None = None
    admin_role: AdminRole | None = Field(
        None, description="a key for the admin routes only, with this role (admins only)"
    )

    def owner(self) -> Principal:
        return Principal(
            user_id=self.user,
            auth_method="local",
            email=self.email,
            display_name=self.display_name,
            department=self.department,
            title=self.title,
            groups=tuple(self.groups or ()),
            roles=tuple(self.roles or ()),
        )

    def has_owner_attributes(self) -> bool:
        stated = (self.email, self.display_name, self.department, self.title)
        return any(v is not None for v in stated) or bool(self.groups or self.roles)


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: float = Field(0.0, ge=0)


def key_routes(gate: AdminGate, identity: Identity) -> APIRouter:
    """The key and user admin routes: key managers and admins; a key that carries an admin
    role is an admin's to issue, rotate or revoke."""
    router = APIRouter()

    def stores() -> tuple[KeyStore, UserStore]:
        keys, users = identity.keys, identity.users
        if keys is None or users is None:
            raise InvalidRequest(
                "Issued API keys are not enabled: set auth.key_secret.", code="keys_not_enabled"
            )
        return keys, users

    @router.post(
        "/admin/keys", openapi_extra=request_body(IssueKey), responses=answers(None, status=201)
    )
    async def issue_key(request: Request) -> Response:
        admin = await gate(request, "keys.write", action="keys.issue")
        body = await _body(request, IssueKey)
        request.state.exchange.admin_action = key_action("issue", body.admin_role)
        authorize(admin, key_permission(body.admin_role))
        keys, users = stores()
        if body.has_owner_attributes():
            authorize(admin, "users.write")
        if body.has_owner_attributes() or await asyncio.to_thread(users.get, body.user) is None:
            await asyncio.to_thread(users.upsert, body.owner())
        expires = time.time() + body.expires_in_days * 86400 if body.expires_in_days else None
        issued = await asyncio.to_thread(
            keys.issue,
            body.user,
            name=body.name,
            expires_at=expires,
            models=body.models,
            admin_role=body.admin_role,
        )
        request.state.exchange.admin_target = f"key:{issued.key.key_id}"
        return JSONResponse(
            {"key": issued.key.as_dict(time.time()), "secret": issued.secret}, status_code=201
        )

    @router.get("/admin/keys", responses=answers(None))
    async def list_keys(request: Request) -> Response:
        await gate(request, "keys.read", action="keys.list")
        keys, _ = stores()
        user = request.query_params.get("user")
        everything = request.query_params.get("all", "").lower() in ("1", "true", "yes")
        found = await asyncio.to_thread(keys.list, user_id=user, include_inactive=everything)
        now = time.time()
        return JSONResponse({"data": [k.as_dict(now) for k in found]})

    @router.post(
        "/admin/keys/{key_id}/rotate",
        openapi_extra=request_body(RotateKey, required=False),
        responses=answers(None, status=201),
    )
    async def rotate_key(request: Request, key_id: str) -> Response:
        keys = await _managed_key(request, gate, stores()[0], key_id, "rotate")
        body = await _body(request, RotateKey, allow_empty=True)
        issued = await asyncio.to_thread(keys.rotate, key_id, grace_s=body.grace_seconds)
        request.state.exchange.admin_target = f"key:{key_id}->{issued.key.key_id}"
        return JSONResponse(
            {"key": issued.key.as_dict(time.time()), "secret": issued.secret}, status_code=201
        )

    @router.delete("/admin/keys/{key_id}", responses=answers(None))
    async def revoke_key(request: Request, key_id: str) -> Response:
        keys = await _managed_key(request, gate, stores()[0], key_id, "revoke")
        revoked = await asyncio.to_thread(keys.revoke, key_id)
        return JSONResponse({"key": revoked.as_dict(time.time())})

    @router.get("/admin/users", responses=answers(None))
    async def list_users(request: Request) -> Response:
        await gate(request, "users.read", action="users.list")
        _, users = stores()
        found = await asyncio.to_thread(users.list)
        return JSONResponse(
            {
                "data": [
                    {
                        "user": u.user_id,
                        "email": u.email,
                        "display_name": u.display_name,
                        "department": u.department,
                        "title": u.title,
                        "groups": list(u.groups),
                        "roles": list(u.roles),
                    }
                    for u in found
                ]
            }
        )

    return router


async def _managed_key(
    request: Request, gate: AdminGate, keys: KeyStore, key_id: str, verb: str
) -> KeyStore:
    """Let in a caller who may `verb` the key `key_id`: one who manages keys, and an admin
    for a key that carries an admin role. The key is looked up only once the caller may
    manage keys at all (a stranger learns nothing about which keys exist)."""
    admin = await gate(request, "keys.write", action=f"keys.{verb}", target=f"key:{key_id}")
    role = (await asyncio.to_thread(keys.get, key_id)).admin_role
    request.state.exchange.admin_action = key_action(verb, role)
    authorize(admin, key_permission(role))
    return keys


async def _body(request: Request, model: type[_M], *, allow_empty: bool = False) -> _M:
    return validated(model, await request.body(), empty=allow_empty)
