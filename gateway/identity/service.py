"""Identity as the API uses it: who is calling, and what may they do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import GatewayConfig
from gateway.identity.access import Grant, grant_for
from gateway.identity.authenticator import Authenticator
from gateway.identity.keys import KeyStore
from gateway.identity.ldap import LdapDirectory
from gateway.identity.oidc import OidcVerifier
from gateway.identity.principal import Principal
from gateway.identity.trusted_header import TrustedHeaderAuth
from gateway.identity.users import UserStore
from gateway.storage import Database


@dataclass
class Identity:
    """The authenticator and the stores behind it, built from one config."""

    config: GatewayConfig
    authenticator: Authenticator
    users: UserStore | None = None
    keys: KeyStore | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig, db: Database | None) -> Identity:
        """Issued keys are on when `auth.key_secret` is set (they need the database)."""
        users = keys = None
        if config.auth.key_secret and db is not None:
            users = UserStore(db)
            keys = KeyStore(db, config.auth.key_secret)
        authenticator = Authenticator(
            config.auth,
            keys=keys,
            users=users,
            ldap=_ldap(config),
            oidc=_oidc(config),
            trusted=_trusted(config),
        )
        return cls(config, authenticator, users, keys)

    async def caller(self, headers: Mapping[str, str], client_host: str | None) -> Principal:
        """The authenticated caller of a model route (AuthError otherwise)."""
        return await self.authenticator.authenticate(headers, client_host)

    def grant(self, principal: Principal) -> Grant:
        """What the caller may do."""
        return grant_for(principal, self.config.access)

    async def aclose(self) -> None:
        await self.authenticator.aclose()


def _ldap(config: GatewayConfig) -> LdapDirectory | None:
    return LdapDirectory(config.auth.ldap) if config.auth.ldap else None


def _oidc(config: GatewayConfig) -> OidcVerifier | None:
    return OidcVerifier(config.auth.oidc) if config.auth.oidc else None


def _trusted(config: GatewayConfig) -> TrustedHeaderAuth | None:
    settings = config.auth.trusted_header
    return TrustedHeaderAuth(settings) if settings else None
