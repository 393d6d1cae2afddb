"""The `auth.oidc` section: an OpenID Connect issuer whose bearer JWTs the gateway accepts,
and which claims fill which fields of the caller (`gateway.identity.oidc` verifies)."""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway.section import ConfigSection

# The signing algorithms the verifier knows; each verifies with a public key.
SUPPORTED_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)


class OidcClaims(ConfigSection):
    """Which token claims fill which Principal fields.

    A name is looked up as a claim first, then as a dotted path into nested claims, so both
    `https://example.com/roles` (a namespaced claim) and `realm_access.roles` work.
    """

    user_id: str = Field("sub", description="the user's id, e.g. sub or preferred_username")
    email: str = Field("email", description="the user's email address")
    display_name: str = Field("name", description="the user's display name")
    department: str = Field("department", description="the user's department")
    title: str = Field("title", description="the user's job title")
    groups: str = Field("groups", description="a list of group names")
    roles: str = Field("roles", description="a list of role names, e.g. realm_access.roles")


class OidcConsoleClient(ConfigSection):
    """The admin console's client at the issuer, for "Sign in with SSO" (an authorization-code
    flow with PKCE that the gateway runs: `gateway.console.sso`)."""

    client_id: str = Field(min_length=1, description="the console's client id at the issuer")
    client_secret: str | None = Field(
        None,
        repr=False,
        description="a confidential client's secret, e.g. ${RAYGATE_CONSOLE_CLIENT_SECRET}; "
        "unset: a public client (PKCE only)",
    )
    scopes: list[str] = Field(
        ["openid", "profile", "email"], description="the scopes asked for at sign-in"
    )
    redirect_uri: str | None = Field(
        None,
        description="the callback URL registered at the issuer, https://GATEWAY/console/sso/"
        "callback; default: built from the request (set it behind a TLS-terminating proxy)",
    )

    @field_validator("client_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redirect_uri")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return url


class OidcConfig(ConfigSection):
    """An OpenID Connect issuer whose bearer JWTs the gateway accepts."""

    issuer: str = Field(description="the issuer identifier; tokens' iss must equal it exactly")
    audience: str | list[str] = Field(
        description="the audience(s) tokens must be issued for (any one suffices)"
    )
    jwks_url: str | None = Field(
        None, description="the JWKS URL; default: jwks_uri from the issuer's discovery document"
    )
    algorithms: list[str] = Field(
        ["RS256", "ES256"], description="accepted signing algorithms (asymmetric only)"
    )
    leeway_s: float = Field(30, ge=0, description="clock skew tolerated on exp, nbf and iat")
    jwks_cache_s: float = Field(600, gt=0, description="how long fetched keys are used as is")
    jwks_min_refetch_s: float = Field(
        30, ge=0, description="least time between JWKS fetches caused by unknown key ids"
    )
    claims: OidcClaims = Field(
        default_factory=OidcClaims, description="claim names mapped to Principal fields"
    )
    timeout_s: float = Field(5, gt=0, description="timeout of each request to the issuer")
    console: OidcConsoleClient | None = Field(
        None, description='the admin console\'s "Sign in with SSO" client; unset: no SSO button'
    )

    @field_validator("issuer", "jwks_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return url

    @field_validator("audience")
    @classmethod
    def _some_audience(cls, audience: str | list[str]) -> str | list[str]:
        names = [audience] if isinstance(audience, str) else audience
        if not names or not all(names):
            raise ValueError("name at least one non-empty audience")
        return audience

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, algorithms: list[str]) -> list[str]:
        if not algorithms:
            raise ValueError("name at least one algorithm")
        for name in algorithms:
            if name.lower() == "none":
                raise ValueError("'none' would accept unsigned tokens")
            if name.upper().startswith("HS"):
                raise ValueError(
                    f"{name} verifies with a shared secret: with a published key as the "
                    "secret anyone could forge tokens"
                )
            if name not in SUPPORTED_ALGORITHMS:
                raise ValueError(f"{name} is not one of {', '.join(SUPPORTED_ALGORITHMS)}")
        return algorithms
