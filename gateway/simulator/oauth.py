"""Token endpoints: Google's OAuth 2.0 JWT-bearer grant (`POST /token`, what a service
account's `token_uri` points at) and Entra ID's client-credentials grant
(`POST /{tenant}/oauth2/v2.0/token`), plus `/_sim/tokens` to inspect and revoke tokens.

Google assertions are verified with the service account's public key (RS256, `aud` Google's
token endpoint or this one, the cloud-platform scope); Entra clients by their secret. With no
accounts or clients configured, any well-formed request gets a token.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import jwt
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator.state import get_state
from gateway.simulator.wire import json_response

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
"""google-auth always sends this as a service-account assertion's `aud`."""
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def _oauth_error(status: int, error: str, description: str) -> Response:
    return json_response({"error": error, "error_description": description}, status)


async def google_token(request: Request) -> Response:
    """`POST /token` with `grant_type=...jwt-bearer&assertion=<JWT>`."""
    state = get_state(request)
    form = await _form(request)
    state.record(request, {"grant_type": form.get("grant_type")})
    assertion = form.get("assertion")
    if form.get("grant_type") != _JWT_BEARER or not isinstance(assertion, str):
        return _oauth_error(400, "unsupported_grant_type", "Invalid grant_type.")
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return _oauth_error(400, "invalid_grant", "Invalid JWT: not a JWT.")
    accounts = state.settings.gcp_service_accounts
    if accounts:
        key = accounts.get(str(claims.get("iss")))
        if key is None:
            return _oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        audiences = [GOOGLE_TOKEN_URI, str(request.url.replace(query=""))]
        try:
            jwt.decode(assertion, key, algorithms=["RS256"], audience=audiences)
        except jwt.InvalidTokenError as exc:
            return _oauth_error(400, "invalid_grant", f"Invalid JWT Signature. ({exc})")
    if CLOUD_PLATFORM not in str(claims.get("scope", "")).split():
        return _oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience.")
    token = state.tokens.issue("google")
    return json_response(
        {"access_token": token, "expires_in": int(state.tokens.ttl_s), "token_type": "Bearer"}
    )


async def entra_token(request: Request) -> Response:
    """`POST /{tenant}/oauth2/v2.0/token` with the client-credentials grant."""
    state = get_state(request)
    form = await _form(request)
    state.record(request, {"grant_type": form.get("grant_type"), "scope": form.get("scope")})
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "AADSTS70003: unsupported grant.")
    clients = state.settings.azure_clients
    client_id = str(form.get("client_id", ""))
    if clients and clients.get(client_id) != form.get("client_secret"):
        return _oauth_error(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in "
            f"the request is the client secret value, not the client secret ID, for a secret "
            f"added to app '{client_id}'.",
        )
    if form.get("scope") != AZURE_SCOPE:
        return _oauth_error(400, "invalid_scope", "AADSTS70011: The provided scope is invalid.")
    token = state.tokens.issue("azure")
    expires = int(state.tokens.ttl_s)
    return json_response(
        {
            "token_type": "Bearer",
            "expires_in": expires,
            "ext_expires_in": expires,
            "access_token": token,
        }
    )


async def list_tokens(request: Request) -> Response:
    """How many tokens each token endpoint issued."""
    return json_response({"issued": dict(get_state(request).tokens.issued)})


async def revoke_tokens(request: Request) -> Response:
    """Revoke every issued token: the next call with one gets a 401."""
    tokens = get_state(request).tokens
    tokens.revoke_all()
    return json_response({"issued": dict(tokens.issued)})


async def _form(request: Request) -> dict[str, str]:
    # application/x-www-form-urlencoded, read without python-multipart.
    return dict(parse_qsl((await request.body()).decode(errors="replace")))


def bearer(request: Request) -> str | None:
    """The bearer token of a request, if it has one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


routes = [
    Route("/token", google_token, methods=["POST"]),
    Route("/{tenant}/oauth2/v2.0/token", entra_token, methods=["POST"]),
    Route("/_sim/tokens", list_tokens, methods=["GET"]),
    Route("/_sim/tokens", revoke_tokens, methods=["DELETE"]),
]
