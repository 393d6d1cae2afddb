"""SSO through the whole gateway: OIDC bearer JWTs (with the attacks on them) and identity
headers from an authenticating reverse proxy, with the official `openai` SDK."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import openai
import pytest

from tests.e2e.conftest import Gateway
from tests.servers.oidc_issuer import OidcIssuer, SigningKey

CHAT = {"messages": [{"role": "user", "content": "hello"}]}


def _client(gateway: Gateway, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key=token, max_retries=0)


def _refused(gateway: Gateway, token: str) -> str | None:
    with pytest.raises(openai.AuthenticationError) as caught:
        _client(gateway, token).models.list()
    return caught.value.code


def test_an_sso_token_maps_groups_and_department_to_access(
    gateway: Gateway, oidc_issuer: OidcIssuer
) -> None:
    token = oidc_issuer.mint(
        {"sub": "carol", "groups": ["contractors"], "department": "legal", "email": "c@x.org"}
    )
    client = _client(gateway, token)
    assert sorted(m.id for m in client.models.list()) == ["sim-embed", "sim-small"]
    assert client.chat.completions.create(model="sim-small", **CHAT).choices
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model="sim-claude", **CHAT)


def test_an_es256_token_is_accepted(gateway: Gateway, oidc_issuer: OidcIssuer) -> None:
    es256 = next(k for k in oidc_issuer.keys if k.algorithm == "ES256")
    token = oidc_issuer.mint({"sub": "dave"}, key=es256)
    assert _client(gateway, token).chat.completions.create(model="sim-small", **CHAT).choices


def test_expired_and_not_yet_valid_tokens_are_refused(
    gateway: Gateway, oidc_issuer: OidcIssuer
) -> None:
    hour_ago = time.time() - 3600
    assert _refused(gateway, oidc_issuer.mint(now=hour_ago)) == "token_expired"
    tomorrow = oidc_issuer.mint({"nbf": int(time.time()) + 86400})
    assert _refused(gateway, tomorrow) == "token_not_yet_valid"


def test_wrong_issuer_and_audience_are_refused(gateway: Gateway, oidc_issuer: OidcIssuer) -> None:
    assert _refused(gateway, oidc_issuer.mint({"iss": "https://evil.example"})) == (
        "invalid_issuer"
    )
    assert _refused(gateway, oidc_issuer.mint({"aud": "another-app"})) == "invalid_audience"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(data: dict[str, object]) -> str:
    return _b64(json.dumps(data).encode())


def test_alg_none_is_refused(gateway: Gateway, oidc_issuer: OidcIssuer) -> None:
    token = f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(oidc_issuer.claims())}."
    assert _refused(gateway, token) == "unsupported_algorithm"


def test_hs256_signed_with_the_public_key_is_refused(
    gateway: Gateway, oidc_issuer: OidcIssuer
) -> None:
    # The classic confusion attack: the issuer's public key (which anyone has) used as an
    # HMAC secret. Built by hand: PyJWT itself refuses to sign this way.
    rsa = next(k for k in oidc_issuer.keys if k.algorithm == "RS256")
    header = _segment({"alg": "HS256", "typ": "JWT", "kid": rsa.kid})
    signing_input = f"{header}.{_segment(oidc_issuer.claims(sub='mallory'))}"
    mac = hmac.new(rsa.public_pem(), signing_input.encode(), hashlib.sha256).digest()
    assert _refused(gateway, f"{signing_input}.{_b64(mac)}") == "unsupported_algorithm"


def test_a_token_from_an_unknown_key_is_refused(gateway: Gateway, oidc_issuer: OidcIssuer) -> None:
    stranger = SigningKey.generate("RS256", kid="not-published")
    assert _refused(gateway, oidc_issuer.mint(key=stranger)) == "unknown_key"
    rsa = next(k for k in oidc_issuer.keys if k.algorithm == "RS256")
    lying = oidc_issuer.mint(key=SigningKey.generate("RS256"), kid=rsa.kid)
    assert _refused(gateway, lying) == "invalid_signature"


def _as_proxy(gateway: Gateway, address: str, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, base_url=gateway.base_url) as client:
        return client.post(
            "/v1/chat/completions", json={"model": "sim-small", **CHAT}, headers=headers
        )


def test_identity_headers_from_the_trusted_proxy_are_accepted(gateway: Gateway) -> None:
    headers = {"x-forwarded-user": "erin", "x-forwarded-groups": "contractors"}
    response = _as_proxy(gateway, "127.0.0.2", headers)
    assert response.status_code == 200, response.text


def test_identity_headers_keep_their_groups_limits(gateway: Gateway) -> None:
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(transport=transport, base_url=gateway.base_url) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "sim-claude", **CHAT},
            headers={"x-forwarded-user": "erin", "x-forwarded-groups": "contractors"},
        )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "model_not_allowed"


def test_a_spoofed_identity_header_from_an_untrusted_address_is_refused(
    gateway: Gateway,
) -> None:
    headers = {"x-forwarded-user": "ceo", "authorization": f"Bearer {gateway.api_key}"}
    response = _as_proxy(gateway, "127.0.0.1", headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "untrusted_proxy"
    assert gateway.upstream_requests() == []
