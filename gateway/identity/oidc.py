"""OIDC / SSO: bearer JWTs from the organisation's identity provider, checked locally.

`OidcVerifier` accepts a token only when it is signed, with an algorithm from the configured
asymmetric allow-list, by a key the issuer publishes in its JWKS (found through OpenID
discovery unless configured), and when its issuer, audience and validity window check out.
Keys come from the issuer's JWKS and nowhere else: the token's own `jku`, `x5u` and `jwk`
headers are ignored, and no algorithm that takes a shared secret is ever used, so a token
cannot pick an HMAC check keyed with a public key.

The JWKS is cached for `jwks_cache_s`. An unknown `kid` (how a key rotation first shows)
causes one refetch, at most every `jwks_min_refetch_s`, so a flood of invented kids cannot
turn into a flood of requests to the identity provider; concurrent verifies share a fetch.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from jwt import PyJWTError
from jwt.algorithms import Algorithm, ECAlgorithm, OKPAlgorithm, RSAAlgorithm, RSAPSSAlgorithm

from gateway.errors import AuthError, UpstreamUnavailable
from gateway.identity.oidc_config import SUPPORTED_ALGORITHMS, OidcConfig
from gateway.identity.principal import Principal

log = logging.getLogger(__name__)

# Every algorithm here verifies with a public key; the curve an ES* algorithm requires.
_ALGORITHMS: dict[str, Algorithm] = {
    "RS256": RSAAlgorithm(RSAAlgorithm.SHA256),
    "RS384": RSAAlgorithm(RSAAlgorithm.SHA384),
    "RS512": RSAAlgorithm(RSAAlgorithm.SHA512),
    "PS256": RSAPSSAlgorithm(RSAPSSAlgorithm.SHA256),
    "PS384": RSAPSSAlgorithm(RSAPSSAlgorithm.SHA384),
    "PS512": RSAPSSAlgorithm(RSAPSSAlgorithm.SHA512),
    "ES256": ECAlgorithm(ECAlgorithm.SHA256),
    "ES384": ECAlgorithm(ECAlgorithm.SHA384),
    "ES512": ECAlgorithm(ECAlgorithm.SHA512),
    "EdDSA": OKPAlgorithm(),
}
_EC_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
if set(_ALGORITHMS) != set(SUPPORTED_ALGORITHMS):  # the config's list and the verifiers agree
    raise RuntimeError("gateway.identity.oidc_config.SUPPORTED_ALGORITHMS is out of date")

# JWK loaders by key type. "oct" (a symmetric secret) is deliberately absent: a key in a
# public document is no secret.
_JWK_LOADERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "RSA": RSAAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}
_PRIVATE_KEYS = (
    rsa.RSAPrivateKey,
    ec.EllipticCurvePrivateKey,
    ed25519.Ed25519PrivateKey,
    ed448.Ed448PrivateKey,
)
_MIN_RSA_BITS = 2048

# A JWS compact serialisation whose header is a JSON object (base64url of '{"' is "eyJ").
# The signature may be empty so that `alg: none` tokens reach the verifier and are refused
# as such rather than being mistaken for an API key.
_JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER_CHALLENGE = {"www-authenticate": 'Bearer error="invalid_token"'}


def looks_like_jwt(secret: str) -> bool:
    """Whether `secret` has a JWT's shape (three base64url segments, a JSON header).

    Cheap and unverified: it tells the authenticator to try OIDC rather than an API key.
    """
    return _JWT_SHAPE.fullmatch(secret) is not None


@dataclass(frozen=True, slots=True)
class _Key:
    kid: str | None
    public_key: PublicKeyTypes
    algorithm: str | None  # the JWK's own `alg`, which then binds the key to it


class _Parts(NamedTuple):
    header: dict[str, Any]
    signing_input: bytes
    payload: str
    signature: bytes


class OidcVerifier:
    """Verifies bearer JWTs against one issuer and maps their claims to a Principal.

    Holds the issuer's keys between calls; create one per issuer at start and `aclose()` it
    at shutdown. When a refetch of an expired JWKS fails, the keys already held stay in use
    (retried every `jwks_min_refetch_s`): an identity-provider outage does not lock out users
    whose tokens it signed before.
    """

    def __init__(
        self,
        config: OidcConfig,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._audiences = frozenset(
            [config.audience] if isinstance(config.audience, str) else config.audience
        )
        self._algorithms = frozenset(config.algorithms)
        self._http = http or httpx.AsyncClient(timeout=config.timeout_s)
        self._owns_http = http is None
        self._clock = clock
        self._jwks_url = config.jwks_url
        self._keys: list[_Key] | None = None
        self._fetched_at = -math.inf  # last successful fetch
        self._attempted_at = -math.inf  # last fetch that finished, successful or not
        self._attempts = 0
        self._last_attempt_ok = False
        self._lock = asyncio.Lock()

    async def verify(self, token: str) -> Principal:
        """The Principal a valid token names; AuthError (or a 503 error) otherwise."""
        parts = _split(token)
        algorithm = parts.header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise _rejected(
                "The token's signing algorithm is not accepted.", "unsupported_algorithm"
            )
        if "crit" in parts.header:
            # RFC 7515: extensions a verifier does not understand must fail it; we know none.
            raise _rejected("The token uses unsupported header extensions.", "invalid_token")
        kid = parts.header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _rejected("The token is malformed.", "invalid_token")
        key = await self._key_for(kid)
        if not _fits(key, algorithm):
            raise _rejected("The token's algorithm does not fit its key.", "unsupported_algorithm")
        if not _ALGORITHMS[algorithm].verify(parts.signing_input, key.public_key, parts.signature):
            raise _rejected("The token's signature is invalid.", "invalid_signature")
        claims = _json_object(parts.payload)
        self._check_claims(claims)
        return self._principal(claims)

    async def aclose(self) -> None:
        """Close the HTTP client if this verifier created it."""
        if self._owns_http:
            await self._http.aclose()

    def _check_claims(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        leeway = self._config.leeway_s
        expires = _time_claim(claims, "exp")
        if expires is None:
            raise _rejected("The token has no expiry.", "invalid_token")
        if now >= expires + leeway:
            raise _rejected("The token has expired.", "token_expired")
        for name in ("nbf", "iat"):
            starts = _time_claim(claims, name)
            if starts is not None and now + leeway < starts:
                raise _rejected("The token is not valid yet.", "token_not_yet_valid")
        if claims.get("iss") != self._config.issuer:
            raise _rejected(
                "The token was not issued by the configured identity provider.", "invalid_issuer"
            )
        audience = claims.get("aud")
        audiences = [audience] if isinstance(audience, str) else audience
        if not isinstance(audiences, list) or not any(
            isinstance(name, str) and name in self._audiences for name in audiences
        ):
            raise _rejected("The token was not issued for this gateway.", "invalid_audience")

    def _principal(self, claims: dict[str, Any]) -> Principal:
        names = self._config.claims
        user_id = _claim(claims, names.user_id)
        if not isinstance(user_id, str) or not user_id.strip():
            raise _rejected("The token does not name a user.", "invalid_token")
        return Principal(
            user_id=user_id,
            auth_method="oidc",
            email=_text(_claim(claims, names.email)),
            display_name=_text(_claim(claims, names.display_name)),
            department=_text(_claim(claims, names.department)),
            title=_text(_claim(claims, names.title)),
            groups=_names(_claim(claims, names.groups)),
            roles=_names(_claim(claims, names.roles)),
        )

    async def _key_for(self, kid: str | None) -> _Key:
        if self._keys is None:
            await self._refresh(self._attempts)
            if self._keys is None:
                raise _unavailable()
        elif self._clock() - self._fetched_at >= self._config.jwks_cache_s and self._may_refetch():
            await self._refresh(self._attempts)
        key = _find(self._keys, kid)
        if key is None and self._may_refetch():
            # Either a rotation the cache has not seen yet, or an invented kid: look once more.
            await self._refresh(self._attempts)
            if not self._last_attempt_ok:
                raise _unavailable()
            key = _find(self._keys, kid)
        if key is None:
            raise _rejected(
                "The token was signed with a key the identity provider does not publish.",
                "unknown_key",
            )
        return key

    def _may_refetch(self) -> bool:
        return self._clock() - self._attempted_at >= self._config.jwks_min_refetch_s

    async def _refresh(self, seen_attempts: int) -> None:
        """Fetch the JWKS unless another verify finished a fetch since `seen_attempts`."""
        async with self._lock:
            if self._attempts != seen_attempts:
                return  # we queued behind that fetch; its outcome is ours
            try:
                self._keys = await self._fetch_keys()
                self._fetched_at = self._clock()
                self._last_attempt_ok = True
            except UpstreamUnavailable:
                self._last_attempt_ok = False
            # Counted when finished, so verifies arriving mid-fetch queue for its outcome; a
            # cancelled fetch is not counted, and the next verify in the queue fetches itself.
            self._attempts += 1
            self._attempted_at = self._clock()

    async def _fetch_keys(self) -> list[_Key]:
        if self._jwks_url is None:
            self._jwks_url = await self._discover_jwks_url()
        document = await self._get_json(self._jwks_url)
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            log.warning("JWKS at %s has no 'keys' list", self._jwks_url)
            raise _unavailable()
        keys = [key for entry in entries if (key := _load_jwk(entry)) is not None]
        log.info("loaded %d signing keys from %s", len(keys), self._jwks_url)
        return keys

    async def _discover_jwks_url(self) -> str:
        document = await discovery_document(self._http, self._config)
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            log.error("discovery document of %s has no jwks_uri", self._config.issuer)
            raise _unavailable()
        return jwks_uri

    async def _get_json(self, url: str) -> Any:
        return await _get_json(self._http, url, self._config.timeout_s)


async def discovery_document(http: httpx.AsyncClient, config: OidcConfig) -> dict[str, Any]:
    """The issuer's OpenID discovery document (its endpoints), fetched with `http`; a 503
    error when it cannot be fetched or describes another issuer."""
    url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
    document = await _get_json(http, url, config.timeout_s)
    # OpenID Discovery 1.0 §4.3: a document for another issuer must not be used.
    if not isinstance(document, dict) or document.get("issuer") != config.issuer:
        log.error(
            "discovery document at %s is unusable: issuer %r (expected %r)",
            url,
            document.get("issuer") if isinstance(document, dict) else None,
            config.issuer,
        )
        raise _unavailable()
    return document


async def _get_json(http: httpx.AsyncClient, url: str, timeout_s: float) -> Any:
    try:
        response = await http.get(url, timeout=timeout_s, headers={"accept": "application/json"})
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as error:
        log.warning("identity provider request to %s failed: %s", url, error)
        raise _unavailable() from error


def _split(token: str) -> _Parts:
    if not looks_like_jwt(token):
        raise _rejected("The token is malformed.", "invalid_token")
    header, payload, signature = token.split(".")
    try:
        return _Parts(
            header=_json_object(header),
            signing_input=f"{header}.{payload}".encode("ascii"),
            payload=payload,
            signature=_b64decode(signature),
        )
    except ValueError:
        raise _rejected("The token is malformed.", "invalid_token") from None


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment))
    except ValueError:  # bad base64, bad UTF-8 and bad JSON all are ValueErrors
        raise _rejected("The token is malformed.", "invalid_token") from None
    if not isinstance(value, dict):
        raise _rejected("The token is malformed.", "invalid_token")
    return value


def _b64decode(segment: str) -> bytes:
    # The alphabet was checked by looks_like_jwt; only the padding JWS omits is missing.
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _load_jwk(entry: Any) -> _Key | None:
    """A JWKS entry as a verification key, or None for one we must not or cannot use."""
    if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
        return None
    kid, algorithm, kty = entry.get("kid"), entry.get("alg"), entry.get("kty")
    loader = _JWK_LOADERS.get(kty) if isinstance(kty, str) else None
    if loader is None or (algorithm is not None and algorithm not in _ALGORITHMS):
        return None
    try:
        key = loader(entry)
    except (PyJWTError, ValueError, TypeError, KeyError) as error:
        log.warning("skipping unusable JWKS key %r: %s", kid, error)
        return None
    public_key = key.public_key() if isinstance(key, _PRIVATE_KEYS) else key
    if isinstance(public_key, rsa.RSAPublicKey) and public_key.key_size < _MIN_RSA_BITS:
        log.warning("skipping JWKS key %r: RSA keys under %d bits", kid, _MIN_RSA_BITS)
        return None
    return _Key(
        kid=kid if isinstance(kid, str) else None, public_key=public_key, algorithm=algorithm
    )


def _find(keys: Sequence[_Key], kid: str | None) -> _Key | None:
    if kid is not None:
        return next((key for key in keys if key.kid == kid), None)
    if len(keys) > 1:
        raise _rejected("The token does not name its signing key.", "invalid_token")
    return keys[0] if keys else None


def _fits(key: _Key, algorithm: str) -> bool:
    """Whether `key` may verify `algorithm`: the token's header alone never decides."""
    if key.algorithm is not None and key.algorithm != algorithm:
        return False
    public_key = key.public_key
    if algorithm[:2] in ("RS", "PS"):
        return isinstance(public_key, rsa.RSAPublicKey)
    if algorithm in _EC_CURVES:
        return (
            isinstance(public_key, ec.EllipticCurvePublicKey)
            and public_key.curve.name == _EC_CURVES[algorithm]
        )
    return isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey)


def _time_claim(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _rejected(f"The token's {name} claim is not a time.", "invalid_token")
    return float(value)


def _claim(claims: dict[str, Any], name: str) -> Any:
    if name in claims:
        return claims[name]
    node: Any = claims
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _names(value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    return tuple(dict.fromkeys(item for item in items if isinstance(item, str) and item))


def _rejected(message: str, code: str) -> AuthError:
    return AuthError(message, code=code, headers=dict(_BEARER_CHALLENGE))


def _unavailable() -> UpstreamUnavailable:
    return UpstreamUnavailable(
        "The identity provider cannot be reached to check the token; try again shortly.",
        code="identity_provider_unavailable",
    )
