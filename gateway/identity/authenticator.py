"""Turns request credentials into a Principal.

The spine knows two credentials: the embedded default's developer key and the admin key.
Issued API keys, LDAP and OIDC plug in here.
"""

from __future__ import annotations

import hmac

from gateway.config import AuthConfig
from gateway.errors import AuthError
from gateway.identity.principal import Principal

DEV_PRINCIPAL = Principal(
    user_id="local-developer",
    auth_method="dev_key",
    display_name="Local developer",
    roles=("developer",),
)
ADMIN_PRINCIPAL = Principal(user_id="admin", auth_method="admin_key", roles=("admin",))


def bearer_or_api_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The presented secret: `Authorization: Bearer ...` (OpenAI) or `x-api-key` (Anthropic)."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return x_api_key or None


class Authenticator:
    """Checks a presented secret against the configured credentials."""

    def __init__(self, config: AuthConfig) -> None:
        self._dev_key = config.dev_key
        self._admin_key = config.admin_key

    def authenticate(self, secret: str | None) -> Principal:
        """The caller behind a secret, or AuthError."""
        if secret is None:
            raise AuthError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        if self._dev_key and _same(secret, self._dev_key):
            return DEV_PRINCIPAL
        raise AuthError("Incorrect API key provided.")

    def authenticate_admin(self, secret: str | None) -> Principal:
        """The admin, or AuthError; admin routes accept nothing else."""
        if secret is not None and self._admin_key and _same(secret, self._admin_key):
            return ADMIN_PRINCIPAL
        raise AuthError("This route needs the admin key.", code="invalid_admin_key")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
