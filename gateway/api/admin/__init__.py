"""The admin API under `/admin`: one `APIRouter` per area, each given what it needs and a
check that the caller is an admin."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from gateway.identity.principal import Principal
from gateway.identity.service import Identity

AuthorizeAdmin = Callable[[Request], Principal]


def admin_check(identity: Identity) -> AuthorizeAdmin:
    """The admin behind a request's credentials; raises AuthError otherwise."""

    def authorize(request: Request) -> Principal:
        return identity.authenticator.authenticate_admin(request.headers)

    return authorize
