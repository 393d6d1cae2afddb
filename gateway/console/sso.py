"""The console's "Sign in with SSO": the OpenID Connect authorization-code flow with PKCE,
run by the gateway (the console's Content-Security-Policy lets the page talk to the gateway
only, and a confidential client's secret must stay on the server).

    GET /console/sso/start     302 to the issuer's authorization endpoint, with a fresh state,
                               nonce and PKCE (S256) challenge; the state, verifier and nonce
                               go to the browser sealed in a short-lived HttpOnly cookie
    GET /console/sso/callback  state checked against that cookie, the code exchanged at the
                               token endpoint (verifier, and client secret when configured),
                               the token checked as every admin request's is (`auth.oidc`,
                               `auth.admin_roles`), then 302 to `/console/#token=...`
    GET /console/sso/config    {"enabled": true|false}, for the sign-in page's SSO button

The cookie is sealed (AES-GCM, `gateway.storage.sealing`) under a key derived from
`auth.key_secret`, which every ingress replica shares; without it, under a random key of this
process, which works with one ingress replica only (`docs/console.md`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jwt
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from gateway.config import GatewayConfig
from gateway.errors import (
    AuthError,
    GatewayError,
    InvalidRequest,
    NotFound,
    UpstreamError,
    UpstreamUnavailable,
)
from gateway.identity.authenticator import Authenticator
from gateway.identity.oidc import discovery_document, looks_like_jwt
from gateway.identity.oidc_config import OidcConfig, OidcConsoleClient
from gateway.storage.keyring import Keyring
from gateway.storage.sealing import Sealer, SealError

log = logging.getLogger(__name__)

COOKIE = "raygate_sso"
STATE_LIFETIME_S = 300
_SEAL_CONTEXT = "console:sso-state"
_NO_STORE = {"cache-control": "no-store", "referrer-policy": "no-referrer"}


@dataclass(frozen=True, slots=True)
class _Pending:
    """A sign-in between start and callback, as the browser holds it (sealed)."""

    state: str
    verifier: str
    nonce: str
    redirect_uri: str
    expires: float


@dataclass(frozen=True, slots=True)
class _Endpoints:
    authorize: str
    token: str
    secret_in_body: bool  # client_secret_post rather than client_secret_basic


class ConsoleSso:
    """The console's sign-in through the identity provider of `auth.oidc`, for the client of
    `auth.oidc.console`. Create one at start and `aclose()` it at shutdown."""

    def __init__(
        self,
        oidc: OidcConfig,
        client: OidcConsoleClient,
        authenticator: Authenticator,
        *,
        state_key: bytes,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
        random_token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    ) -> None:
        self._oidc = oidc
        self._client = client
        self._authenticator = authenticator
        self._sealer = Sealer(Keyring("sso", {"sso": state_key}))
        self._http = http or httpx.AsyncClient(timeout=oidc.timeout_s)
        self._owns_http = http is None
        self._clock = clock
        self._random_token = random_token
        self._endpoints: _Endpoints | None = None

    @classmethod
    def from_config(cls, config: GatewayConfig, authenticator: Authenticator) -> ConsoleSso | None:
        """The sign-in of `auth.oidc.console`, or None when it is not configured. The state
        cookie's key comes from `auth.key_secret`, else from this process (one replica only)."""
        oidc = config.auth.oidc
        if oidc is None or oidc.console is None:
            return None
        if config.auth.key_secret:
            state_key = config.auth.key_secret.encode("utf-8")
        else:
            log.warning(
                "console SSO: auth.key_secret is not set; sign-in state is sealed under a key "
                "of this process, so a sign-in that returns to another ingress replica fails"
            )
            state_key = secrets.token_bytes(32)
        return cls(oidc, oidc.console, authenticator, state_key=state_key)

    @property
    def redirect_uri(self) -> str | None:
        """The callback URL configured for the issuer, if any (else built per request)."""
        return self._client.redirect_uri

    async def start(self, redirect_uri: str) -> tuple[str, str]:
        """The issuer's authorization URL for a new sign-in returning to `redirect_uri`, and
        the sealed state the browser must bring back (the cookie's value)."""
        endpoints = await self._discover()
        pending = _Pending(
            state=self._random_token(),
            verifier=self._random_token(),  # 43 URL-safe characters: RFC 7636 §4.1
            nonce=self._random_token(),
            redirect_uri=redirect_uri,
            expires=self._clock() + STATE_LIFETIME_S,
        )
        params = {
            "response_type": "code",
            "client_id": self._client.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self._client.scopes),
            "state": pending.state,
            "nonce": pending.nonce,
            "code_challenge": _s256(pending.verifier),
            "code_challenge_method": "S256",
        }
        url = httpx.URL(endpoints.authorize).copy_merge_params(params)
        sealed = self._sealer.seal(json.dumps(asdict(pending)), context=_SEAL_CONTEXT)
        return str(url), sealed

    async def finish(self, params: Mapping[str, str], cookie: str | None) -> str:
        """The admin's bearer token for a callback with `params` (the issuer's answer) and the
        state `cookie`; a GatewayError saying what failed otherwise (403 when the user holds
        no admin role)."""
        if "error" in params:
            described = params.get("error_description")
            raise AuthError(
                f"The identity provider did not sign you in: {params['error']}"
                + (f" ({described})" if described else "")
                + ".",
                code="sso_refused",
            )
        pending = self._open(cookie)
        if not hmac.compare_digest(params.get("state", "").encode(), pending.state.encode()):
            raise InvalidRequest(
                "The sign-in's state does not match this browser's; start again.",
                code="invalid_sso_state",
            )
        code = params.get("code")
        if not code:
            raise InvalidRequest("The identity provider sent no code.", code="invalid_sso_state")
        tokens = await self._exchange(code, pending)
        _check_nonce(tokens.get("id_token"), pending.nonce)
        return await self._admin_token(tokens)

    async def aclose(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            await self._http.aclose()

    async def _discover(self) -> _Endpoints:
        if self._endpoints is None:
            document = await discovery_document(self._http, self._oidc)
            authorize, token = (
                document.get("authorization_endpoint"),
                document.get("token_endpoint"),
            )
            if not (_is_http_url(authorize) and _is_http_url(token)):
                log.error(
                    "discovery of %s names no authorization or token endpoint", self._oidc.issuer
                )
                raise UpstreamUnavailable(
                    "The identity provider publishes no authorization or token endpoint.",
                    code="identity_provider_unavailable",
                )
            methods = document.get("token_endpoint_auth_methods_supported")
            post_only = (
                isinstance(methods, list)
                and "client_secret_basic" not in methods
                and "client_secret_post" in methods
            )
            self._endpoints = _Endpoints(str(authorize), str(token), post_only)
        return self._endpoints

    def _open(self, cookie: str | None) -> _Pending:
        if not cookie:
            raise InvalidRequest(
                "This browser holds no sign-in in progress (it expires after 5 minutes, or "
                "cookies are off); start again.",
                code="invalid_sso_state",
            )
        try:
            pending = _Pending(**json.loads(self._sealer.open(cookie, context=_SEAL_CONTEXT)))
        except (SealError, ValueError, TypeError):
            raise InvalidRequest(
                "This browser's sign-in state is not one this gateway issued; start again.",
                code="invalid_sso_state",
            ) from None
        if self._clock() >= pending.expires:
            raise InvalidRequest(
                "The sign-in took longer than 5 minutes; start again.", code="invalid_sso_state"
            )
        return pending

    async def _exchange(self, code: str, pending: _Pending) -> dict[str, Any]:
        endpoints = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending.redirect_uri,
            "client_id": self._client.client_id,
            "code_verifier": pending.verifier,
        }
        headers = {"accept": "application/json"}
        secret = self._client.client_secret
        if secret is not None and endpoints.secret_in_body:
            form["client_secret"] = secret
        elif secret is not None:  # RFC 6749 §2.3.1: each form-encoded, then HTTP Basic
            pair = f"{quote(self._client.client_id, safe='')}:{quote(secret, safe='')}"
            headers["authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            response = await self._http.post(endpoints.token, data=form, headers=headers)
        except httpx.HTTPError as error:
            log.warning("token request to %s failed: %s", endpoints.token, error)
            raise UpstreamUnavailable(
                "The identity provider cannot be reached to finish the sign-in; try again.",
                code="identity_provider_unavailable",
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 500 or not isinstance(body, dict):
            log.warning("token endpoint %s answered %d", endpoints.token, response.status_code)
            raise UpstreamError(
                f"The identity provider's token endpoint answered {response.status_code}.",
                code="sso_exchange_failed",
            )
        if response.status_code != 200:
            reason = body.get("error_description") or body.get("error") or response.status_code
            raise AuthError(
                f"The identity provider did not accept the sign-in code: {reason}. Start again.",
                code="sso_exchange_failed",
            )
        return body

    async def _admin_token(self, tokens: Mapping[str, Any]) -> str:
        """The first of the access token and the ID token that the gateway accepts as an admin
        credential (`auth.oidc`'s audience decides which); PermissionDenied for a user with no
        admin role."""
        candidates = [
            token
            for token in (tokens.get("access_token"), tokens.get("id_token"))
            if isinstance(token, str) and looks_like_jwt(token)
        ]
        refused: AuthError | None = None
        for token in candidates:
            try:
                admin = await self._authenticator.admin({"authorization": f"Bearer {token}"}, None)
            except AuthError as error:
                refused = refused or error
                continue
            log.info("console SSO sign-in: %s (%s)", admin.user_id, ", ".join(admin.roles))
            return token
        if refused is None:
            raise UpstreamError(
                "The identity provider returned no token the gateway can check (no JWT).",
                code="sso_exchange_failed",
            )
        raise AuthError(
            f"The identity provider's tokens are not accepted by auth.oidc: {refused.message}",
            code=refused.code,
        )


def sso_routes(sso: ConsoleSso | None) -> APIRouter:
    """`/console/sso/...` (see the module docstring); with `sso` None, `start` and `callback`
    answer 404 and `config` says SSO is off."""
    router = APIRouter(include_in_schema=False)

    def configured() -> ConsoleSso:
        if sso is None:
            raise NotFound(
                "Sign-in with SSO is not configured on this gateway (auth.oidc.console).",
                code="sso_not_configured",
            )
        return sso

    def redirect_uri(request: Request, sign_in: ConsoleSso) -> str:
        return sign_in.redirect_uri or str(request.url_for("console_sso_callback"))

    @router.get("/console/sso/config")
    async def sso_config() -> Response:
        return JSONResponse({"enabled": sso is not None}, headers=_NO_STORE)

    @router.get("/console/sso/start")
    async def sso_start(request: Request) -> Response:
        sign_in = configured()
        callback = redirect_uri(request, sign_in)
        location, sealed = await sign_in.start(callback)
        response = RedirectResponse(location, status_code=302, headers=_NO_STORE)
        response.set_cookie(COOKIE, sealed, max_age=STATE_LIFETIME_S, **_cookie_scope(callback))
        return response

    @router.get("/console/sso/callback", name="console_sso_callback")
    async def sso_callback(request: Request) -> Response:
        sign_in = configured()
        scope = _cookie_scope(redirect_uri(request, sign_in))
        forget = Response()
        forget.delete_cookie(COOKIE, **scope)  # one sign-in per state, whatever the outcome
        try:
            token = await sign_in.finish(request.query_params, request.cookies.get(COOKIE))
        except GatewayError as error:
            error.headers = {
                **error.headers,
                **_NO_STORE,
                "set-cookie": forget.headers["set-cookie"],
            }
            raise
        # The fragment never reaches a server; the console moves it into sessionStorage.
        response = RedirectResponse(f"../#token={quote(token, safe='')}", 302, headers=_NO_STORE)
        response.delete_cookie(COOKIE, **scope)
        return response

    return router


def _cookie_scope(callback: str) -> dict[str, Any]:
    """Where the state cookie goes: to the callback's folder only, over TLS where the callback
    is, never to scripts, and along with the issuer's top-level redirect back (Lax)."""
    url = urlsplit(callback)
    return {
        "path": url.path.rsplit("/", 1)[0] or "/",
        "secure": url.scheme == "https",
        "httponly": True,
        "samesite": "lax",
    }


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_nonce(id_token: Any, nonce: str) -> None:
    """The ID token, when there is one, must carry this sign-in's nonce. It came straight from
    the token endpoint, so its claims are read here; its signature is checked with the rest
    when it is the token used (OpenID Connect Core §3.1.3.7)."""
    if id_token is None:
        return
    try:
        claims = jwt.decode(str(id_token), options={"verify_signature": False})
    except jwt.PyJWTError:
        raise UpstreamError(
            "The identity provider returned a malformed ID token.", code="sso_exchange_failed"
        ) from None
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise AuthError(
            "The ID token was not issued for this sign-in (nonce); start again.",
            code="invalid_sso_state",
        )


def _is_http_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("https://", "http://"))
