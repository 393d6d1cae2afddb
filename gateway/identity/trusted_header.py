"""Trusted headers: the caller's identity as set by an authenticating reverse proxy.

Behind oauth2-proxy (or any proxy that signs users in and forwards `X-Forwarded-User`,
`-Email`, `-Groups`), the gateway takes those headers as the identity, but only from the
proxy: the connection must come from a configured address, carry the proxy's shared secret,
or both where both are configured. Anyone else sending the same headers is refused rather
than ignored, because a spoofed identity header is an attack, not a missing credential.

Only the headers the configuration names are read, and only the user header is named by
default: a proxy that sets the user but passes the client's other headers through would
otherwise let a client add itself to any group (and with it, models, policy profiles and
admin roles). Name `email_header`, `groups_header` and the others only for headers your proxy
sets on every request, replacing what the client sent (oauth2-proxy sets and strips all four
of `X-Forwarded-User`, `-Email`, `-Groups`, `-Preferred-Username`).

The address check reads the connection's peer as the ASGI server reports it. Ray Serve's HTTP
proxy runs uvicorn, which by default rewrites that address from `X-Forwarded-For` for
connections from loopback (`FORWARDED_ALLOW_IPS`, default `127.0.0.1,::1`): `raygate up`
turns that off; on a cluster set `FORWARDED_ALLOW_IPS=""` in the Ray nodes' environment, or
authenticate the proxy with `shared_secret`, which no address rewrite can forge.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

from pydantic import Field, field_validator, model_validator

from gateway.errors import AuthError
from gateway.identity.principal import Principal
from gateway.section import ConfigSection

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedHeaderConfig(ConfigSection):
    """Where the authenticating proxy connects from, how it proves itself, and its headers.

    Header names are matched case-insensitively (stored lower-case, as ASGI delivers them).
    """

    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or CIDRs the proxy connects from, e.g. 10.0.0.0/8 or fd00::/8",
    )
    shared_secret: str | None = Field(
        None, min_length=16, description="a secret the proxy sends in secret_header"
    )
    secret_header: str = Field("x-raygate-proxy-secret", description="carries shared_secret")
    user_header: str = Field("x-forwarded-user", description="the user's id; required")
    email_header: str | None = Field(
        None, description="the user's email address, if the proxy sets it (x-forwarded-email)"
    )
    name_header: str | None = Field(
        None, description="display name, if the proxy sets it (x-forwarded-preferred-username)"
    )
    groups_header: str | None = Field(
        None, description="comma-separated groups, if the proxy sets it (x-forwarded-groups)"
    )
    department_header: str | None = Field(None, description="the user's department, if set")

    @field_validator("shared_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `${VAR:-}` in YAML gives "": a secret that is switched off, never an empty secret.
        return None if value == "" else value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, proxies: list[str]) -> list[str]:
        for proxy in proxies:
            _network(proxy)  # raises ValueError naming the bad entry
        return proxies

    @field_validator(
        "secret_header",
        "user_header",
        "email_header",
        "name_header",
        "groups_header",
        "department_header",
    )
    @classmethod
    def _lower_case(cls, name: str | None) -> str | None:
        return name.strip().lower() if name else name

    @model_validator(mode="after")
    def _proxy_is_authenticated(self) -> TrustedHeaderConfig:
        if not self.trusted_proxies and self.shared_secret is None:
            raise ValueError(
                "set trusted_proxies, shared_secret or both: otherwise anyone could claim "
                "any identity with a header"
            )
        return self


class TrustedHeaderAuth:
    """Turns a trusted proxy's identity headers into a Principal."""

    def __init__(self, config: TrustedHeaderConfig) -> None:
        self._config = config
        self._networks = tuple(_network(proxy) for proxy in config.trusted_proxies)
        self._secret = config.shared_secret.encode() if config.shared_secret else None

    def authenticate(self, headers: Mapping[str, str], client_host: str | None) -> Principal | None:
        """The user the proxy vouches for; None without an identity header.

        `headers` must look names up case-insensitively (Starlette's `Headers`) or hold them
        lower-case; `client_host` is the connection's peer address. An identity header from
        anyone but the proxy raises AuthError with code "untrusted_proxy".
        """
        config = self._config
        user_id = _value(headers, config.user_header)
        if user_id is None:
            return None
        if not (self._from_trusted_address(client_host) and self._carries_secret(headers)):
            raise AuthError(
                "Identity headers are accepted only from the gateway's authenticating proxy.",
                code="untrusted_proxy",
            )
        return Principal(
            user_id=user_id,
            auth_method="trusted_header",
            email=_value(headers, config.email_header),
            display_name=_value(headers, config.name_header),
            department=_value(headers, config.department_header),
            groups=_groups(_value(headers, config.groups_header)),
        )

    def _from_trusted_address(self, client_host: str | None) -> bool:
        if not self._networks:
            return True  # the shared secret alone authenticates the proxy
        if client_host is None:
            return False
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        # A dual-stack listener reports an IPv4 proxy as ::ffff:a.b.c.d.
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._networks)

    def _carries_secret(self, headers: Mapping[str, str]) -> bool:
        if self._secret is None:
            return True  # the address alone authenticates the proxy
        presented = _value(headers, self._config.secret_header)
        # Compared as bytes: compare_digest refuses non-ASCII str, and a header is attacker input.
        return presented is not None and hmac.compare_digest(presented.encode(), self._secret)


def _network(proxy: str) -> _Network:
    try:
        return ipaddress.ip_network(proxy.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{proxy!r} is not an IP address or CIDR") from None


def _value(headers: Mapping[str, str], name: str | None) -> str | None:
    if name is None:
        return None
    # A proxy that appends its header instead of replacing the client's leaves two, and a
    # Mapping shows only the first: the client's. Starlette's Headers can tell; refuse those.
    getlist = getattr(headers, "getlist", None)
    if getlist is None:
        raw = headers.get(name)
    else:
        values = getlist(name)
        if len(values) > 1:
            raise AuthError(f"The {name} header appears more than once.", code="untrusted_proxy")
        raw = values[0] if values else None
    if raw is None:
        return None
    value = _utf8(raw).strip()
    return value or None


def _utf8(value: str) -> str:
    # ASGI servers decode header bytes as latin-1; proxies send names like "José" as UTF-8.
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


def _groups(value: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
