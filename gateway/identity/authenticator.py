"""Turns request credentials into a Principal.

Methods, in the order they are tried:
1. trusted proxy headers (`auth.trusted_header`), when an identity header is present;
2. `Authorization: Basic` against the LDAP directory (`auth.ldap`);
3. a bearer secret (`Authorization: Bearer`, or Anthropic's `x-api-key`): the embedded
   default's developer key, an issued key (`rg-...`), or an OIDC JWT (`auth.oidc`).
A method that is not configured never accepts anything.

Admin routes authenticate through `admin()` instead: the break-glass admin key, an issued
admin key, or a directory / identity-provider login whose groups or roles `auth.admin_roles`
maps to an admin role (see `gateway.identity.admin`). An issued admin key opens admin routes
only; on a model route it is refused.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import replace
from typing import cast

from gateway.config import AuthConfig
from gateway.errors import AuthError, PermissionDenied
from gateway.identity.admin import AdminPrincipal, AdminRolesConfig, directory_admin
from gateway.identity.keys import ApiKey, KeyStore, looks_like_issued_key
from gateway.identity.ldap import LdapDirectory
from gateway.identity.oidc import OidcVerifier, looks_like_jwt
from gateway.identity.principal import Principal
from gateway.identity.roles import AdminRole, is_admin_role
from gateway.identity.trusted_header import TrustedHeaderAuth
from gateway.identity.users import UserStore

DEV_PRINCIPAL = Principal(
    user_id="local-developer",
    auth_method="dev_key",
    display_name="Local developer",
    roles=("developer",),
)
ADMIN_PRINCIPAL = Principal(user_id="admin", auth_method="admin_key", roles=("admin",))


def presented_secret(headers: Mapping[str, str]) -> str | None:
    """The bearer secret: `Authorization: Bearer ...` (OpenAI) or `x-api-key` (Anthropic)."""
    authorization = headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return headers.get("x-api-key") or None


class Authenticator:
    """Checks a request's credentials against every configured method."""

    def __init__(
        self,
        config: AuthConfig,
        *,
        keys: KeyStore | None = None,
        users: UserStore | None = None,
        ldap: LdapDirectory | None = None,
        oidc: OidcVerifier | None = None,
        trusted: TrustedHeaderAuth | None = None,
    ) -> None:
        self._dev_key = config.dev_key
        self._admin_key = config.admin_key
        self._admin_roles: AdminRolesConfig = config.admin_roles
        self._keys = keys
        self._users = users
        self._ldap = ldap
        self._oidc = oidc
        self._trusted = trusted

    async def authenticate(self, headers: Mapping[str, str], client_host: str | None) -> Principal:
        """The caller behind a request, or AuthError (401)."""
        if self._trusted is not None:
            principal = self._trusted.authenticate(headers, client_host)
            if principal is not None:
                return principal
        basic = _basic_credentials(headers.get("authorization"))
        if basic is not None:
            if self._ldap is None:
                raise AuthError("HTTP Basic authentication is not enabled on this gateway.")
            return await self._ldap.authenticate(*basic)
        secret = presented_secret(headers)
        if secret is None:
            raise AuthError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        if self._dev_key and _same(secret, self._dev_key):
            return DEV_PRINCIPAL
        if self._keys is not None and looks_like_issued_key(secret):
            return await self._key_owner(secret)
        if self._oidc is not None and looks_like_jwt(secret):
            return await self._oidc.verify(secret)
        raise AuthError("Incorrect API key provided.")

    def authenticate_admin(self, headers: Mapping[str, str]) -> Principal:
        """The holder of the shared admin key, or AuthError (the first release's admin check;
        `admin()` is the one with roles)."""
        secret = presented_secret(headers)
        if secret is not None and self._admin_key and _same(secret, self._admin_key):
            return ADMIN_PRINCIPAL
        raise AuthError("This route needs the admin key.", code="invalid_admin_key")

    async def admin(self, headers: Mapping[str, str], client_host: str | None) -> AdminPrincipal:
        """The administrator behind a request to an admin route, with their admin roles.

        AuthError (401, `invalid_admin_key`) without an admin credential: no credential, the
        developer key, an ordinary issued key, an unknown secret. PermissionDenied (403,
        `admin_role_required`) for a directory or SSO login that holds no admin role.
        """
        secret = presented_secret(headers)
        if secret is not None and self._admin_key and _same(secret, self._admin_key):
            return AdminPrincipal(ADMIN_PRINCIPAL, ("admin",), ("admin_key",))
        if secret is not None and self._keys is not None and looks_like_issued_key(secret):
            key, local = await asyncio.to_thread(self._key_and_local_owner, secret)
            return _admin_of_key(key, local)
        principal = await self._directory_login(headers, client_host, secret)
        if principal is None:
            raise AuthError(
                "This route needs an admin credential: the admin key, an admin API key, or a "
                "directory or SSO login with an admin role.",
                code="invalid_admin_key",
            )
        admin = directory_admin(principal, self._admin_roles)
        if admin is None:
            raise PermissionDenied(
                f"{principal.user_id} holds no admin role (auth.admin_roles).",
                code="admin_role_required",
            )
        return admin

    async def _directory_login(
        self, headers: Mapping[str, str], client_host: str | None, secret: str | None
    ) -> Principal | None:
        """The caller as the directory or the identity provider vouches for them, or None."""
        if self._trusted is not None:
            principal = self._trusted.authenticate(headers, client_host)
            if principal is not None:
                return principal
        basic = _basic_credentials(headers.get("authorization"))
        if basic is not None and self._ldap is not None:
            return await self._ldap.authenticate(*basic)
        if secret is not None and self._oidc is not None and looks_like_jwt(secret):
            return await self._oidc.verify(secret)
        return None

    async def _key_owner(self, secret: str) -> Principal:
        """The owner of an issued key: from the directory where there is one, else the local
        user record (read in the same thread hop as the key)."""
        key, local = await asyncio.to_thread(self._key_and_local_owner, secret)
        if key.admin_role is not None:
            raise PermissionDenied(
                "This is an admin API key: it opens the admin routes only.",
                code="admin_key_not_for_models",
            )
        owner = await self._ldap.lookup(key.user_id) if self._ldap is not None else None
        owner = owner or local or Principal(user_id=key.user_id, auth_method="api_key")
        return replace(owner, auth_method="api_key", key_id=key.key_id, model_scope=key.models)

    def _key_and_local_owner(self, secret: str) -> tuple[ApiKey, Principal | None]:
        assert self._keys is not None
        key = self._keys.verify(secret)
        return key, self._users.get(key.user_id) if self._users is not None else None

    async def aclose(self) -> None:
        """Release directory and identity-provider connections."""
        if self._ldap is not None:
            await self._ldap.aclose()
        if self._oidc is not None:
            await self._oidc.aclose()


def _admin_of_key(key: ApiKey, local: Principal | None) -> AdminPrincipal:
    role = key.admin_role
    if role is None or not is_admin_role(role):
        raise AuthError(
            "This API key is not an admin key; admin routes need one issued with an admin role.",
            code="invalid_admin_key",
        )
    # Who the key belongs to, for the record; the role is the key's alone, never the owner's.
    who = local or Principal(user_id=key.user_id, auth_method="admin_api_key")
    owner = replace(who, auth_method="admin_api_key", key_id=key.key_id, roles=(role,), groups=())
    return AdminPrincipal(owner, (cast(AdminRole, role),), (f"key:{key.key_id}",))


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    if not authorization:
        return None
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise AuthError("Malformed HTTP Basic credentials.", code="invalid_credentials") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise AuthError("Malformed HTTP Basic credentials.", code="invalid_credentials")
    return username, password


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
