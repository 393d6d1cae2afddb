"""Admin roles instead of one shared admin key: admin, auditor and key_manager, granted by a
directory group (a real slapd), an OIDC role (a real issuer), a trusted proxy's groups header
or an issued admin key, and never by what a key manager writes about a key's owner."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from starlette.datastructures import Headers

from gateway.audit import AuditStore, verify
from gateway.audit.actions import admin_actor, admin_record
from gateway.audit.query import AuditFilter, list_records
from gateway.config import AuthConfig
from gateway.errors import AuthError, PermissionDenied
from gateway.identity.admin import AdminPrincipal, authorize, key_permission
from gateway.identity.authenticator import Authenticator
from gateway.identity.keys import KeyStore
from gateway.identity.ldap import LdapConfig, LdapDirectory
from gateway.identity.oidc import OidcVerifier
from gateway.identity.oidc_config import OidcConfig
from gateway.identity.principal import Principal
from gateway.identity.roles import PERMISSIONS, ROLE_PERMISSIONS
from gateway.identity.trusted_header import TrustedHeaderAuth, TrustedHeaderConfig
from gateway.identity.users import UserStore
from gateway.storage import Database
from tests.servers.oidc_issuer import OidcIssuer
from tests.servers.slapd import (
    ALICE,
    BOB,
    CAROL,
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)
from tests.support import require_binary

KEY_SECRET = "0123456789abcdef0123456789abcdef"
ADMIN_KEY = "break-glass-admin-key-0123456789"
ROLES = {
    "admin": {"groups": ["ml-platform"], "roles": ["raygate-admin"]},
    "auditor": {"groups": ["compliance", "finance"], "roles": ["raygate-auditor"]},
    "key_manager": {"groups": ["finance"]},
}


def bearer(secret: str) -> Headers:
    return Headers({"authorization": f"Bearer {secret}"})


def basic(user: str, password: str) -> Headers:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return Headers({"authorization": f"Basic {token}"})


def auth_config(**fields: Any) -> AuthConfig:
    return AuthConfig.model_validate({"admin_key": ADMIN_KEY, "admin_roles": ROLES, **fields})


@pytest.fixture
def db() -> Database:
    return Database("sqlite://:memory:")


@pytest.fixture
def keys(db: Database) -> KeyStore:
    return KeyStore(db, KEY_SECRET)


@pytest.fixture
def authenticator(db: Database, keys: KeyStore) -> Authenticator:
    return Authenticator(auth_config(dev_key="sk-raygate-dev"), keys=keys, users=UserStore(db))


async def refused(
    authenticator: Authenticator, headers: Headers, client_host: str = "127.0.0.1"
) -> tuple[int, str | None]:
    with pytest.raises((AuthError, PermissionDenied)) as caught:
        await authenticator.admin(headers, client_host)
    error = caught.value
    assert isinstance(error, AuthError | PermissionDenied)
    return error.status, error.code


# --- the roles and what they may do ---------------------------------------------------------


def test_the_admin_holds_every_permission_and_the_others_only_theirs() -> None:
    assert ROLE_PERMISSIONS["admin"] == frozenset(PERMISSIONS)
    assert "audit.read" in ROLE_PERMISSIONS["auditor"]
    assert not ROLE_PERMISSIONS["auditor"] & {"keys.write", "cache.write", "audit.write"}
    assert "keys.write" in ROLE_PERMISSIONS["key_manager"]
    assert not ROLE_PERMISSIONS["key_manager"] & {"audit.read", "admin_keys.write"}


def test_a_key_manager_cannot_mint_an_admin_key() -> None:
    manager = AdminPrincipal(Principal("kim", "oidc"), ("key_manager",), ("group:platform",))
    authorize(manager, key_permission(None))
    with pytest.raises(PermissionDenied) as caught:
        authorize(manager, key_permission("auditor"))
    assert (caught.value.status, caught.value.code) == (403, "insufficient_admin_role")
    assert "admin role" in caught.value.message or "admin" in caught.value.message


# --- keys -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_break_glass_admin_key_is_an_admin(authenticator: Authenticator) -> None:
    admin = await authenticator.admin(bearer(ADMIN_KEY), None)
    assert admin.roles == ("admin",) and admin.granted_by == ("admin_key",)


@pytest.mark.asyncio
async def test_an_issued_admin_key_carries_its_role_and_opens_admin_routes_only(
    authenticator: Authenticator, keys: KeyStore
) -> None:
    issued = keys.issue("ann", admin_role="auditor")
    admin = await authenticator.admin(bearer(issued.secret), "10.0.0.1")
    assert admin.roles == ("auditor",) and admin.granted_by == (f"key:{issued.key.key_id}",)
    assert admin.principal.key_id == issued.key.key_id and admin.user_id == "ann"
    authorize(admin, "audit.read")
    with pytest.raises(PermissionDenied):
        authorize(admin, "keys.write")

    with pytest.raises(PermissionDenied) as caught:
        await authenticator.authenticate(bearer(issued.secret), "10.0.0.1")
    assert caught.value.code == "admin_key_not_for_models"


@pytest.mark.asyncio
async def test_a_revoked_admin_key_opens_nothing(
    authenticator: Authenticator, keys: KeyStore
) -> None:
    issued = keys.issue("ann", admin_role="admin")
    keys.rotate(issued.key.key_id, grace_s=3600)
    keys.revoke(issued.key.key_id)
    assert await refused(authenticator, bearer(issued.secret)) == (401, "api_key_revoked")


@pytest.mark.asyncio
async def test_groups_written_for_a_key_owner_never_make_an_admin(
    db: Database, authenticator: Authenticator, keys: KeyStore
) -> None:
    # A key manager states the owner's groups and roles; the admin mapping must not read them.
    UserStore(db).upsert(
        Principal("mallory", "local", groups=("ml-platform",), roles=("raygate-admin", "admin"))
    )
    issued = keys.issue("mallory")
    assert await refused(authenticator, bearer(issued.secret)) == (401, "invalid_admin_key")


@pytest.mark.asyncio
async def test_the_developer_key_and_unknown_secrets_are_no_admin_credentials(
    authenticator: Authenticator,
) -> None:
    for headers in (bearer("sk-raygate-dev"), bearer("sk-guess"), Headers({})):
        assert await refused(authenticator, headers) == (401, "invalid_admin_key")


@pytest.mark.asyncio
async def test_a_database_writer_cannot_promote_or_reassign_their_own_key(
    db: Database, authenticator: Authenticator, keys: KeyStore
) -> None:
    issued = keys.issue("mallory")
    db.execute("UPDATE api_keys SET admin_role = 'admin' WHERE key_id = ?", (issued.key.key_id,))
    assert await refused(authenticator, bearer(issued.secret)) == (401, "invalid_api_key")
    db.execute("UPDATE api_keys SET admin_role = NULL, user_id = 'ceo'")
    with pytest.raises(AuthError):
        await authenticator.authenticate(bearer(issued.secret), "127.0.0.1")


# --- a trusted proxy's groups header ----------------------------------------------------------


@pytest.mark.asyncio
async def test_a_proxy_group_maps_to_a_role_only_when_the_proxy_sets_groups() -> None:
    proxied = Headers({"x-forwarded-user": "cleo", "x-forwarded-groups": "compliance"})
    with_groups = TrustedHeaderConfig(
        trusted_proxies=["10.0.0.0/8"], groups_header="x-forwarded-groups"
    )
    authenticator = Authenticator(auth_config(), trusted=TrustedHeaderAuth(with_groups))
    admin = await authenticator.admin(proxied, "10.1.2.3")
    assert admin.roles == ("auditor",) and admin.granted_by == ("group:compliance",)

    user_only = TrustedHeaderConfig(trusted_proxies=["10.0.0.0/8"])
    authenticator = Authenticator(auth_config(), trusted=TrustedHeaderAuth(user_only))
    # The proxy sets only the user header: a groups header is the client's own, ignored.
    assert await refused(authenticator, proxied, "10.1.2.3") == (403, "admin_role_required")


# --- an OIDC role claim -------------------------------------------------------------------------


@pytest.fixture
def issuer() -> Iterator[OidcIssuer]:
    with OidcIssuer() as running:
        yield running


@pytest_asyncio.fixture
async def oidc_authenticator(issuer: OidcIssuer) -> AsyncIterator[Authenticator]:
    config = OidcConfig.model_validate(
        {
            "issuer": issuer.url,
            "audience": issuer.audience,
            "claims": {"roles": "realm_access.roles"},
        }
    )
    verifier = OidcVerifier(config)
    yield Authenticator(auth_config(), oidc=verifier)
    await verifier.aclose()


@pytest.mark.asyncio
async def test_an_oidc_role_grants_its_admin_role(
    issuer: OidcIssuer, oidc_authenticator: Authenticator
) -> None:
    token = issuer.mint({"sub": "olga", "realm_access": {"roles": ["raygate-auditor", "staff"]}})
    admin = await oidc_authenticator.admin(bearer(token), None)
    assert (admin.user_id, admin.roles) == ("olga", ("auditor",))
    assert admin.granted_by == ("role:raygate-auditor",)

    plain = issuer.mint({"sub": "pat", "realm_access": {"roles": ["staff"]}})
    assert await refused(oidc_authenticator, bearer(plain)) == (403, "admin_role_required")


# --- a directory group, through a real slapd -------------------------------------------------


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    binary = require_binary("slapd", "/usr/sbin/slapd")
    with Slapd(binary, tmp_path_factory.mktemp("slapd")) as server:
        yield server


@pytest_asyncio.fixture
async def ldap_authenticator(slapd: Slapd) -> AsyncIterator[Authenticator]:
    directory = LdapDirectory(
        LdapConfig(
            url=slapd.url,
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PASSWORD,
            user_search_base=PEOPLE,
            group_search_base=GROUPS,
        )
    )
    yield Authenticator(auth_config(), ldap=directory)
    await directory.aclose()


@pytest.mark.asyncio
async def test_directory_groups_grant_admin_roles(ldap_authenticator: Authenticator) -> None:
    alice = await ldap_authenticator.admin(basic("alice", ALICE.password), None)
    assert alice.roles == ("admin",) and alice.granted_by == ("group:ml-platform",)
    assert alice.principal.auth_method == "ldap"

    bob = await ldap_authenticator.admin(basic("bob", BOB.password), None)
    assert bob.roles == ("auditor", "key_manager")
    authorize(bob, "audit.read")
    authorize(bob, "keys.write")
    with pytest.raises(PermissionDenied):
        authorize(bob, "admin_keys.write")

    assert await refused(ldap_authenticator, basic("carol", CAROL.password)) == (
        403,
        "admin_role_required",
    )
    assert (await refused(ldap_authenticator, basic("bob", "wrong")))[0] == 401


# --- the admin action in the audit trail --------------------------------------------------------


def test_an_admin_action_is_chained_with_its_actor_role_and_target(tmp_path: Path) -> None:
    store = AuditStore.open(f"sqlite:///{tmp_path / 'audit.db'}")
    admin = AdminPrincipal(
        Principal("ann", "ldap", key_id="3f2a", groups=("platform",), roles=("staff",)),
        ("key_manager",),
        ("group:platform",),
    )
    actor = admin_actor(admin.principal, admin.roles)
    store.append([admin_record(actor, "keys.revoke", "key:9c1d", route="/admin/keys/9c1d")])

    (record,) = list_records(store, AuditFilter(user="ann")).records
    assert (record.admin_action, record.admin_target) == ("keys.revoke", "key:9c1d")
    assert record.principal is not None
    assert (record.principal.key_id, record.principal.roles) == ("3f2a", ["key_manager"])
    assert record.principal.groups == ["platform"]
    assert verify(store).ok
    store.db.execute("UPDATE audit_records SET admin_target = 'key:0000'")
    assert verify(store).problem is not None
