"""OidcVerifier against a real OpenID issuer on a loopback port (tests.servers.oidc_issuer).

Time is a fake clock shared by the verifier and the tokens; JWKS traffic is asserted through
the issuer's own fetch counters.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
import pytest_asyncio
from pydantic import ValidationError

from gateway.errors import AuthError, UpstreamUnavailable
from gateway.identity.oidc import OidcVerifier, looks_like_jwt
from gateway.identity.oidc_config import OidcClaims, OidcConfig
from gateway.identity.principal import Principal
from tests.servers.oidc_issuer import OidcIssuer, SigningKey

NOW = 1_800_000_000.0
LEEWAY = 30.0
MIN_REFETCH = 30.0
CACHE = 600.0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Keys:
    rsa: SigningKey
    ec: SigningKey
    stray_rsa: SigningKey


@pytest.fixture(scope="session")
def keys() -> Keys:
    # RSA generation is the slow part of these tests; once per session is enough.
    return Keys(
        rsa=SigningKey.generate("RS256", kid="rsa-1"),
        ec=SigningKey.generate("ES256", kid="ec-1"),
        stray_rsa=SigningKey.generate("RS256", kid="stray"),
    )


@pytest.fixture
def issuer(keys: Keys) -> Iterator[OidcIssuer]:
    with OidcIssuer([keys.rsa, keys.ec]) as running:
        yield running


@pytest.fixture
def clock() -> Clock:
    return Clock()


def config_for(idp: OidcIssuer, **fields: Any) -> OidcConfig:
    return OidcConfig.model_validate(
        {
            "issuer": idp.url,
            "audience": idp.audience,
            "leeway_s": LEEWAY,
            "jwks_cache_s": CACHE,
            "jwks_min_refetch_s": MIN_REFETCH,
            "claims": {"roles": "realm_access.roles"},
            **fields,
        }
    )


@pytest_asyncio.fixture
async def verifier(issuer: OidcIssuer, clock: Clock) -> AsyncIterator[OidcVerifier]:
    verifier = OidcVerifier(config_for(issuer), clock=clock)
    yield verifier
    await verifier.aclose()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def compact(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A JWS put together by hand, for tokens no honest library would produce."""
    return ".".join(
        [b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature)]
    )


async def rejected(verifier: OidcVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await verifier.verify(token)
    return caught.value


# Valid tokens


@pytest.mark.asyncio
async def test_rs256_token_maps_claims_to_principal(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(
        {
            "sub": "alice",
            "email": "alice@example.com",
            "name": "Alice Liddell",
            "department": "Research",
            "title": "Staff Scientist",
            "groups": ["eng", "ml-platform", "eng", ""],
            "realm_access": {"roles": ["developer", "auditor"]},
        },
        key=keys.rsa,
        now=clock.now,
    )

    principal = await verifier.verify(token)

    assert principal == Principal(
        user_id="alice",
        auth_method="oidc",
        email="alice@example.com",
        display_name="Alice Liddell",
        department="Research",
        title="Staff Scientist",
        groups=("eng", "ml-platform"),
        roles=("developer", "auditor"),
    )


@pytest.mark.asyncio
async def test_es256_token_is_accepted(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint({"sub": "bob", "groups": ["sales"]}, key=keys.ec, now=clock.now)

    principal = await verifier.verify(token)

    assert (principal.user_id, principal.groups, principal.roles) == ("bob", ("sales",), ())


@pytest.mark.asyncio
async def test_claim_names_map_user_id_and_namespaced_claims(
    issuer: OidcIssuer, keys: Keys, clock: Clock
) -> None:
    claims = OidcClaims(
        user_id="preferred_username", roles="https://example.com/roles", department="org.unit"
    )
    verifier = OidcVerifier(config_for(issuer, claims=claims), clock=clock)
    token = issuer.mint(
        {
            "sub": "0f3a-opaque",
            "preferred_username": "carol",
            "https://example.com/roles": ["admin"],
            "org": {"unit": "Finance"},
            "email": 42,
        },
        key=keys.rsa,
        now=clock.now,
    )

    principal = await verifier.verify(token)
    await verifier.aclose()

    assert principal.user_id == "carol"
    assert principal.roles == ("admin",)
    assert principal.department == "Finance"
    assert principal.email is None  # not a string: ignored, not stringified


@pytest.mark.asyncio
@pytest.mark.parametrize("subject", [None, "", 7])
async def test_token_without_a_usable_subject_is_invalid(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock, subject: Any
) -> None:
    omit = ["sub"] if subject is None else []
    token = issuer.mint({"sub": subject}, key=keys.rsa, now=clock.now, omit=omit)

    error = await rejected(verifier, token)

    assert error.code == "invalid_token"


@pytest.mark.asyncio
async def test_token_without_kid_uses_the_single_published_key(keys: Keys, clock: Clock) -> None:
    with OidcIssuer([keys.rsa]) as issuer:
        verifier = OidcVerifier(config_for(issuer), clock=clock)
        principal = await verifier.verify(issuer.mint(key=keys.rsa, kid=None, now=clock.now))
        await verifier.aclose()

    assert principal.user_id == "alice"


@pytest.mark.asyncio
async def test_token_without_kid_is_invalid_when_several_keys_are_published(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    error = await rejected(verifier, issuer.mint(key=keys.rsa, kid=None, now=clock.now))

    assert error.code == "invalid_token"


# Validity window


@pytest.mark.asyncio
async def test_expired_token_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(key=keys.rsa, now=clock.now - 3600, claims={"exp": clock.now - 600})

    error = await rejected(verifier, token)

    assert (error.status, error.code) == (401, "token_expired")


@pytest.mark.asyncio
async def test_token_not_yet_valid_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint({"nbf": clock.now + 600}, key=keys.rsa, now=clock.now)

    assert (await rejected(verifier, token)).code == "token_not_yet_valid"


@pytest.mark.asyncio
async def test_token_issued_in_the_future_is_not_yet_valid(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(key=keys.rsa, now=clock.now + 600)

    assert (await rejected(verifier, token)).code == "token_not_yet_valid"


@pytest.mark.asyncio
async def test_expiry_within_leeway_is_accepted(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint({"exp": clock.now - LEEWAY + 1}, key=keys.rsa, now=clock.now - 300)

    assert (await verifier.verify(token)).user_id == "alice"


@pytest.mark.asyncio
async def test_expiry_just_beyond_leeway_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint({"exp": clock.now - LEEWAY - 1}, key=keys.rsa, now=clock.now - 300)

    assert (await rejected(verifier, token)).code == "token_expired"


@pytest.mark.asyncio
async def test_not_before_within_leeway_is_accepted(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(key=keys.rsa, now=clock.now + LEEWAY - 1)

    assert (await verifier.verify(token)).user_id == "alice"


@pytest.mark.asyncio
async def test_not_before_just_beyond_leeway_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint({"iat": clock.now}, key=keys.rsa, now=clock.now + LEEWAY + 1)

    assert (await rejected(verifier, token)).code == "token_not_yet_valid"


@pytest.mark.asyncio
@pytest.mark.parametrize("exp", [None, "soon", True, float("inf")])
async def test_token_without_a_numeric_expiry_is_invalid(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock, exp: Any
) -> None:
    claims = issuer.claims(now=clock.now)
    claims.pop("exp")
    if exp is not None:
        claims["exp"] = exp
    # PyJWT refuses to encode inf; build the payload ourselves and sign it as issued.
    token = jwt.api_jws.encode(
        json.dumps(claims).encode(),
        keys.rsa.private_key,
        algorithm="RS256",
        headers={"kid": "rsa-1"},
    )

    assert (await rejected(verifier, token)).code == "invalid_token"


# Issuer and audience


@pytest.mark.asyncio
@pytest.mark.parametrize("iss", ["https://evil.example.com", "{url}/", None])
async def test_token_from_another_issuer_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock, iss: str | None
) -> None:
    claims = {} if iss is None else {"iss": iss.format(url=issuer.url)}
    token = issuer.mint(claims, key=keys.rsa, now=clock.now, omit=["iss"] if iss is None else [])

    error = await rejected(verifier, token)

    assert error.code == "invalid_issuer"


@pytest.mark.asyncio
@pytest.mark.parametrize("aud", ["another-app", ["another-app", "third"], [], None, 5])
async def test_token_for_another_audience_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock, aud: Any
) -> None:
    claims = {} if aud is None else {"aud": aud}
    token = issuer.mint(claims, key=keys.rsa, now=clock.now, omit=["aud"] if aud is None else [])

    error = await rejected(verifier, token)

    assert error.code == "invalid_audience"


@pytest.mark.asyncio
async def test_audience_list_containing_ours_is_accepted(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint({"aud": ["account", "raygate"]}, key=keys.rsa, now=clock.now)

    assert (await verifier.verify(token)).user_id == "alice"


@pytest.mark.asyncio
async def test_any_configured_audience_is_accepted(
    issuer: OidcIssuer, keys: Keys, clock: Clock
) -> None:
    verifier = OidcVerifier(config_for(issuer, audience=["raygate", "raygate-cli"]), clock=clock)
    token = issuer.mint({"aud": "raygate-cli"}, key=keys.rsa, now=clock.now)

    principal = await verifier.verify(token)
    await verifier.aclose()

    assert principal.user_id == "alice"


# Algorithms and signatures


@pytest.mark.asyncio
async def test_alg_none_token_is_rejected_without_fetching_keys(
    issuer: OidcIssuer, verifier: OidcVerifier, clock: Clock
) -> None:
    token = compact({"alg": "none", "typ": "JWT"}, issuer.claims(now=clock.now))

    error = await rejected(verifier, token)

    assert error.code == "unsupported_algorithm"
    assert issuer.jwks_fetches == 0


@pytest.mark.asyncio
async def test_hs256_token_signed_with_the_public_key_pem_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    header = {"alg": "HS256", "typ": "JWT", "kid": keys.rsa.kid}
    unsigned = compact(header, issuer.claims(now=clock.now)).rsplit(".", 1)[0]
    mac = hmac.new(keys.rsa.public_pem(), unsigned.encode(), hashlib.sha256).digest()

    error = await rejected(verifier, f"{unsigned}.{b64(mac)}")

    assert error.code == "unsupported_algorithm"
    assert issuer.jwks_fetches == 0


@pytest.mark.asyncio
async def test_algorithm_outside_the_allow_list_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, clock: Clock
) -> None:
    es384 = issuer.add_key(SigningKey.generate("ES384", kid="ec-384"))

    error = await rejected(verifier, issuer.mint(key=es384, now=clock.now))

    assert error.code == "unsupported_algorithm"


@pytest.mark.asyncio
async def test_token_whose_algorithm_does_not_fit_its_key_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    # An RS256 token naming the EC key: the header must not choose how the key is used.
    token = issuer.mint(key=keys.stray_rsa, kid=keys.ec.kid, now=clock.now)

    assert (await rejected(verifier, token)).code == "unsupported_algorithm"


@pytest.mark.asyncio
async def test_token_signed_by_an_unpublished_key_under_a_known_kid_is_invalid_signature(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(key=keys.stray_rsa, kid=keys.rsa.kid, now=clock.now)

    error = await rejected(verifier, token)

    assert error.code == "invalid_signature"
    assert "BEGIN" not in error.message and keys.rsa.kid not in error.message


@pytest.mark.asyncio
async def test_tampered_payload_is_invalid_signature(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    header, _, signature = issuer.mint(key=keys.ec, now=clock.now).split(".")
    forged_payload = b64(json.dumps(issuer.claims(now=clock.now, sub="admin")).encode())

    error = await rejected(verifier, f"{header}.{forged_payload}.{signature}")

    assert error.code == "invalid_signature"


@pytest.mark.asyncio
async def test_critical_header_extension_is_rejected(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(key=keys.rsa, headers={"crit": ["exp"]}, now=clock.now)

    assert (await rejected(verifier, token)).code == "invalid_token"


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0",  # two segments
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln.ZXh0cmE",  # four segments
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIi*iJhIn0.c2ln",  # not base64url
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnX",  # impossible base64 length
        b64(b"not json") + ".eyJzdWIiOiJhIn0.c2ln",
        b64(b'{"alg": "RS256"') + ".eyJzdWIiOiJhIn0.c2ln",  # truncated JSON
        b64(b'["alg", "RS256"]') + ".eyJzdWIiOiJhIn0.c2ln",  # JSON, not an object
        b64(b'{"alg": "RS256", "kid": 5}') + ".eyJzdWIiOiJhIn0.c2ln",
        "",
    ],
)
async def test_malformed_token_is_invalid(verifier: OidcVerifier, token: str) -> None:
    assert (await rejected(verifier, token)).code == "invalid_token"


@pytest.mark.asyncio
@pytest.mark.parametrize("payload", [b"not json", b'"a string"', b"\xff\xfe"])
async def test_signed_payload_that_is_not_a_json_object_is_invalid(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, payload: bytes
) -> None:
    token = jwt.api_jws.encode(
        payload, keys.rsa.private_key, algorithm="RS256", headers={"kid": keys.rsa.kid}
    )

    assert (await rejected(verifier, token)).code == "invalid_token"


@pytest.mark.asyncio
async def test_rejections_carry_a_bearer_challenge(verifier: OidcVerifier) -> None:
    error = await rejected(verifier, "garbage")

    assert error.headers["www-authenticate"].startswith("Bearer")


# Keys: discovery, caching, refetch, rotation


@pytest.mark.asyncio
async def test_cached_keys_serve_many_tokens_with_one_fetch(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    for i in range(20):
        clock.advance(10)
        key = keys.rsa if i % 2 else keys.ec
        await verifier.verify(issuer.mint({"sub": f"user-{i}"}, key=key, now=clock.now))

    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


@pytest.mark.asyncio
async def test_expired_cache_is_refetched(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))
    clock.advance(CACHE)

    await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))

    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 2)


@pytest.mark.asyncio
async def test_concurrent_verifies_share_one_fetch(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    tokens = [issuer.mint({"sub": f"u{i}"}, key=keys.rsa, now=clock.now) for i in range(20)]

    principals = await asyncio.gather(*(verifier.verify(token) for token in tokens))

    assert [p.user_id for p in principals] == [f"u{i}" for i in range(20)]
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (1, 1)


@pytest.mark.asyncio
async def test_cancelled_fetch_leaves_the_next_waiting_verify_to_fetch(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(key=keys.rsa, now=clock.now)
    issuer.hold()
    first = asyncio.create_task(verifier.verify(token))
    assert await asyncio.to_thread(issuer.wait_for_requests, 1)  # its discovery is in flight
    second = asyncio.create_task(verifier.verify(token))
    await asyncio.sleep(0)  # one loop turn: `second` queues on the fetch lock

    first.cancel()
    issuer.release()

    assert (await second).user_id == "alice"
    assert first.cancelled()
    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (2, 1)


@pytest.mark.asyncio
async def test_unknown_kid_refetches_once_then_is_unknown_key(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))
    clock.advance(MIN_REFETCH)
    invented = issuer.mint(key=keys.stray_rsa, kid="no-such-kid", now=clock.now)

    error = await rejected(verifier, invented)

    assert error.code == "unknown_key"
    assert issuer.jwks_fetches == 2


@pytest.mark.asyncio
async def test_unknown_kids_refetch_at_most_once_per_interval(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))

    for i in range(50):  # a flood of invented kids within one interval
        clock.now = NOW + i * 0.5
        token = issuer.mint(key=keys.stray_rsa, kid=f"invented-{i}", now=clock.now)
        assert (await rejected(verifier, token)).code == "unknown_key"
    assert issuer.jwks_fetches == 1

    clock.now = NOW + MIN_REFETCH
    await rejected(verifier, issuer.mint(key=keys.stray_rsa, kid="again", now=clock.now))
    await rejected(verifier, issuer.mint(key=keys.stray_rsa, kid="and-again", now=clock.now))
    assert issuer.jwks_fetches == 2


@pytest.mark.asyncio
async def test_rotated_key_is_picked_up_and_retired_key_refused(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))
    issuer.remove_key(keys.rsa.kid)
    fresh = issuer.add_key(SigningKey.generate("RS256", kid="rsa-2"))
    clock.advance(MIN_REFETCH)

    tokens = [issuer.mint({"sub": f"u{i}"}, key=fresh, now=clock.now) for i in range(10)]
    principals = await asyncio.gather(*(verifier.verify(token) for token in tokens))

    assert {p.user_id for p in principals} == {f"u{i}" for i in range(10)}
    assert issuer.jwks_fetches == 2  # one refetch, shared by the ten
    retired = issuer.mint(key=keys.rsa, now=clock.now)
    assert (await rejected(verifier, retired)).code == "unknown_key"
    assert issuer.jwks_fetches == 2  # within the interval: no further fetch


@pytest.mark.asyncio
async def test_explicit_jwks_url_skips_discovery(
    issuer: OidcIssuer, keys: Keys, clock: Clock
) -> None:
    verifier = OidcVerifier(config_for(issuer, jwks_url=issuer.jwks_url), clock=clock)

    await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))
    await verifier.aclose()

    assert (issuer.discovery_fetches, issuer.jwks_fetches) == (0, 1)


@pytest.mark.asyncio
async def test_keys_not_meant_for_signatures_are_ignored(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    encryption = {**keys.stray_rsa.jwk(), "use": "enc", "kid": "enc-1"}
    secret = {"kty": "oct", "kid": "hmac-1", "k": b64(b"0123456789abcdef"), "alg": "RS256"}
    issuer.publish_raw(encryption, secret, {"kty": "RSA", "kid": "broken"}, "junk")

    for kid in ("enc-1", "hmac-1", "broken"):
        token = issuer.mint(key=keys.stray_rsa, kid=kid, now=clock.now)
        assert (await rejected(verifier, token)).code == "unknown_key"
    assert (await verifier.verify(issuer.mint(key=keys.ec, now=clock.now))).user_id == "alice"


# Identity provider unavailable


@pytest.mark.asyncio
async def test_unreachable_issuer_is_a_503(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(key=keys.rsa, now=clock.now)
    issuer.stop()

    with pytest.raises(UpstreamUnavailable) as caught:
        await verifier.verify(token)

    assert (caught.value.status, caught.value.code) == (503, "identity_provider_unavailable")
    assert issuer.url not in caught.value.message


@pytest.mark.asyncio
async def test_issuer_answering_errors_is_a_503_and_recovers(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    token = issuer.mint(key=keys.rsa, now=clock.now)
    issuer.available = False

    with pytest.raises(UpstreamUnavailable):
        await verifier.verify(token)

    issuer.available = True
    assert (await verifier.verify(token)).user_id == "alice"


@pytest.mark.asyncio
async def test_held_keys_stay_in_use_while_the_issuer_is_down(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))
    issuer.available = False
    clock.advance(CACHE)

    assert (await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))).user_id == "alice"
    assert (await verifier.verify(issuer.mint(key=keys.ec, now=clock.now))).user_id == "alice"
    assert issuer.jwks_fetches == 2  # one failed refresh, then none until the interval passes


@pytest.mark.asyncio
async def test_unknown_kid_while_the_issuer_is_down_is_a_503(
    issuer: OidcIssuer, verifier: OidcVerifier, keys: Keys, clock: Clock
) -> None:
    await verifier.verify(issuer.mint(key=keys.rsa, now=clock.now))
    issuer.available = False
    clock.advance(MIN_REFETCH)

    with pytest.raises(UpstreamUnavailable):
        await verifier.verify(issuer.mint(key=keys.stray_rsa, kid="rsa-new", now=clock.now))


@pytest.mark.asyncio
async def test_discovery_document_for_another_issuer_is_refused(
    issuer: OidcIssuer, keys: Keys, clock: Clock
) -> None:
    # Same discovery URL (the trailing slash is dropped), but the document names issuer.url.
    verifier = OidcVerifier(config_for(issuer, issuer=issuer.url + "/"), clock=clock)

    with pytest.raises(UpstreamUnavailable):
        await verifier.verify(issuer.mint({"iss": issuer.url + "/"}, key=keys.rsa, now=clock.now))
    await verifier.aclose()


# Configuration and shape


@pytest.mark.parametrize(
    "algorithms", [["none"], ["NONE"], ["HS256"], ["RS256", "hs512"], ["XS256"], []]
)
def test_config_refuses_unsafe_or_unknown_algorithms(algorithms: list[str]) -> None:
    with pytest.raises(ValidationError, match="algorithms"):
        OidcConfig(issuer="https://idp.example.com", audience="raygate", algorithms=algorithms)


@pytest.mark.parametrize(
    "fields",
    [
        {"audience": []},
        {"audience": ""},
        {"issuer": "idp.example.com"},
        {"leeway_s": -1},
        {"claims": {"user": "sub"}},
        {"unknown": 1},
    ],
)
def test_config_refuses_bad_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OidcConfig.model_validate(
            {"issuer": "https://idp.example.com", "audience": "raygate", **fields}
        )


def test_config_defaults() -> None:
    config = OidcConfig(issuer="https://idp.example.com", audience="raygate")

    assert config.algorithms == ["RS256", "ES256"]
    assert config.claims.user_id == "sub"
    assert (config.leeway_s, config.jwks_cache_s, config.jwks_min_refetch_s) == (30, 600, 30)


def test_looks_like_jwt_tells_tokens_from_api_keys(issuer: OidcIssuer, keys: Keys) -> None:
    assert looks_like_jwt(issuer.mint(key=keys.rsa))
    assert looks_like_jwt(compact({"alg": "none"}, {"sub": "a"}))
    assert not looks_like_jwt("sk-raygate-0123456789abcdef")
    assert not looks_like_jwt("abc.def.ghi")
    assert not looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0")
    assert not looks_like_jwt("eyJ.x.y with spaces")
