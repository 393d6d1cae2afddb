"""A real OpenID Connect issuer on a loopback port, for tests that validate tokens.

`OidcIssuer` serves `/.well-known/openid-configuration` and a JWKS over plain HTTP from a
thread, counts how often each is fetched, lets a test rotate its keys (add a kid, drop one)
or take it down mid-test, and mints tokens with any claims, headers and key:

    with OidcIssuer() as issuer:
        token = issuer.mint({"groups": ["eng"]})
        config = OidcConfig(issuer=issuer.url, audience=issuer.audience)

It also runs the authorization-code flow with PKCE (S256) for browser sign-in: `/authorize`
approves at once as the user of `login_as(claims)` and redirects back with a code and the
state; `/token` checks the code, redirect_uri, client (and its secret, when registered with
one) and the PKCE verifier, and answers an access token for `audience` and an ID token for the
client carrying the nonce:

    issuer.login_as({"sub": "ann", "roles": ["raygate-admin"]})

Keys are generated locally with `cryptography`; nothing leaves the machine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import EllipsisType, TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"
AUTHORIZE_PATH = "/authorize"
TOKEN_PATH = "/token"

_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}


@dataclass(frozen=True)
class SigningKey:
    """A private key the issuer (or a forger) signs with, and its public JWK."""

    kid: str
    algorithm: str
    private_key: PrivateKeyTypes

    @classmethod
    def generate(cls, algorithm: str = "RS256", kid: str | None = None) -> SigningKey:
        """A fresh key for `algorithm` (RS*/PS*, ES256/384/512 or EdDSA)."""
        private_key: PrivateKeyTypes
        if algorithm[:2] in ("RS", "PS"):
            private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm in _CURVES:
            private_key = ec.generate_private_key(_CURVES[algorithm])
        elif algorithm == "EdDSA":
            private_key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"no key type for {algorithm}")
        kid = kid or f"{algorithm.lower()}-{secrets.token_hex(4)}"
        return cls(kid=kid, algorithm=algorithm, private_key=private_key)

    @property
    def public_key(self) -> PublicKeyTypes:
        """The public half."""
        return self.private_key.public_key()  # type: ignore[union-attr]

    def public_pem(self) -> bytes:
        """The public key as PEM (what an HMAC-confusion forger would use as the secret)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWKS entry, with kid, use and alg."""
        jwk_class = jwt.get_algorithm_by_name(self.algorithm)
        fields = jwk_class.to_jwk(self.public_key, as_dict=True)
        return {**fields, "kid": self.kid, "use": "sig", "alg": self.algorithm}


@dataclass(frozen=True)
class _Grant:
    """An authorization code handed out by `/authorize`, until `/token` redeems it."""

    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    claims: dict[str, Any]


class OidcIssuer:
    """An OpenID Connect issuer serving discovery and a JWKS on a loopback port.

    `url` is the issuer identifier (the `iss` its tokens carry) and the base of its endpoints.
    `jwks_fetches` and `discovery_fetches` count requests received; `available = False` makes
    both endpoints answer 503, `hold()` keeps requests waiting until `release()`, and `stop()`
    makes them unreachable (`start()` serves again on the same port).
    """

    def __init__(
        self,
        keys: Iterable[SigningKey] | None = None,
        *,
        audience: str = "raygate",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.audience = audience
        self.available = True
        self._keys: list[SigningKey] = list(
            keys
            if keys is not None
            else [SigningKey.generate("RS256"), SigningKey.generate("ES256")]
        )
        self._extra_jwks: list[Any] = []
        self._lock = threading.Condition()
        self._counts = {DISCOVERY_PATH: 0, JWKS_PATH: 0}
        self._answering = threading.Event()
        self._answering.set()
        self._user: dict[str, Any] = {}
        self._clients: dict[str, str | None] = {}
        self._codes: dict[str, _Grant] = {}
        self._refusal: str | None = None
        self.authorize_requests: list[dict[str, str]] = []  # the query of each, oldest first
        self._server = self._bind(host, port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The issuer identifier and base URL, e.g. `http://127.0.0.1:40123`."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def jwks_url(self) -> str:
        """Where the JWKS is served (also announced by discovery as `jwks_uri`)."""
        return self.url + JWKS_PATH

    @property
    def keys(self) -> list[SigningKey]:
        """The keys currently published, oldest first."""
        with self._lock:
            return list(self._keys)

    @property
    def jwks_fetches(self) -> int:
        """How many JWKS requests were answered so far (503s included)."""
        with self._lock:
            return self._counts[JWKS_PATH]

    @property
    def discovery_fetches(self) -> int:
        """How many discovery requests were answered so far (503s included)."""
        with self._lock:
            return self._counts[DISCOVERY_PATH]

    def start(self) -> OidcIssuer:
        """Serve from a daemon thread (again after `stop`, on the same port); returns self."""
        if self._thread is None:
            if self._server.socket.fileno() == -1:
                host, port = self._server.server_address[:2]
                self._server = self._bind(str(host), port)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                # stop() waits up to one poll interval; the default 0.5 s adds up over a suite.
                kwargs={"poll_interval": 0.02},
                name="oidc-issuer",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; connections are refused afterwards."""
        self._answering.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()

    def _bind(self, host: str, port: int) -> ThreadingHTTPServer:
        # Bound (port 0: the kernel picks a free one) and listening from here on, so a client
        # connecting right after start() waits in the backlog rather than racing the thread.
        return _Server((host, port), _handler_for(self))

    def __enter__(self) -> OidcIssuer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def add_key(self, key: SigningKey | str = "RS256") -> SigningKey:
        """Publish `key` (or a fresh key for the algorithm named); returns it."""
        added = SigningKey.generate(key) if isinstance(key, str) else key
        with self._lock:
            self._keys.append(added)
        return added

    def remove_key(self, kid: str) -> None:
        """Stop publishing the key `kid`."""
        with self._lock:
            self._keys = [key for key in self._keys if key.kid != kid]

    def rotate(self, algorithm: str = "RS256") -> SigningKey:
        """Publish a fresh key and drop the oldest one, as an IdP's rotation does."""
        fresh = SigningKey.generate(algorithm)
        with self._lock:
            self._keys = [*self._keys[1:], fresh]
        return fresh

    def hold(self) -> None:
        """Keep discovery and JWKS requests waiting (counted on arrival) until `release()`."""
        self._answering.clear()

    def release(self) -> None:
        """Answer the held requests, and later ones at once."""
        self._answering.set()

    def wait_for_requests(self, count: int, timeout_s: float = 10) -> bool:
        """Block until `count` discovery and JWKS requests in all have arrived; False on timeout.

        From async tests: `await asyncio.to_thread(issuer.wait_for_requests, 1)`.
        """
        with self._lock:
            return self._lock.wait_for(lambda: sum(self._counts.values()) >= count, timeout_s)

    def publish_raw(self, *entries: Any) -> None:
        """Also publish these JWKS entries verbatim (symmetric keys, encryption keys, junk)."""
        with self._lock:
            self._extra_jwks.extend(entries)

    def jwks(self) -> dict[str, Any]:
        """The JWKS document as served."""
        with self._lock:
            return {"keys": [key.jwk() for key in self._keys] + list(self._extra_jwks)}

    def claims(
        self, *, now: float | None = None, lifetime_s: float = 300, **overrides: Any
    ) -> dict[str, Any]:
        """Typical ID-token claims issued at `now`, with `overrides` on top."""
        issued = int(time.time() if now is None else now)
        return {
            "iss": self.url,
            "aud": self.audience,
            "sub": "alice",
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(lifetime_s),
            **overrides,
        }

    def mint(
        self,
        claims: Mapping[str, Any] | None = None,
        *,
        key: SigningKey | None = None,
        kid: str | EllipsisType | None = ...,
        algorithm: str | None = None,
        headers: Mapping[str, Any] | None = None,
        now: float | None = None,
        omit: Iterable[str] = (),
    ) -> str:
        """A signed token: `claims()` at `now` updated with `claims`, less those in `omit`.

        `key` defaults to the newest published key, and need not be published (a forger's
        key). `kid` defaults to the key's own; pass None to leave it out of the header, or
        another key's to lie about it. `algorithm` defaults to the key's.
        """
        signer = key or self.keys[-1]
        header: dict[str, Any] = dict(headers or {})
        chosen_kid = signer.kid if kid is ... else kid
        if chosen_kid is not None:
            header["kid"] = chosen_kid
        payload = {**self.claims(now=now), **(claims or {})}
        for name in omit:
            payload.pop(name, None)
        return jwt.encode(
            payload, signer.private_key, algorithm=algorithm or signer.algorithm, headers=header
        )

    @property
    def authorization_endpoint(self) -> str:
        """Where browsers sign in (announced by discovery)."""
        return self.url + AUTHORIZE_PATH

    @property
    def token_endpoint(self) -> str:
        """Where codes are exchanged for tokens (announced by discovery)."""
        return self.url + TOKEN_PATH

    def login_as(self, claims: Mapping[str, Any]) -> None:
        """Approve every later sign-in at `/authorize` as the user these claims describe
        (on top of `claims()`), and stop refusing sign-ins."""
        with self._lock:
            self._user = dict(claims)
            self._refusal = None

    def refuse_sign_in(self, error: str = "access_denied") -> None:
        """Answer every later sign-in with `error` (redirected back, as OAuth 2.0 does)."""
        with self._lock:
            self._refusal = error

    def register_client(self, client_id: str, secret: str | None = None) -> None:
        """Require `secret` (HTTP Basic or client_secret_post) from `client_id` at `/token`;
        an unregistered client is a public one (PKCE only)."""
        with self._lock:
            self._clients[client_id] = secret

    def _authorize(self, query: str) -> tuple[int, dict[str, str]]:
        """The redirect back to the client: a code and the state, or an error."""
        params = {name: values[0] for name, values in parse_qs(query).items()}
        with self._lock:
            self.authorize_requests.append(params)
            refusal, user = self._refusal, dict(self._user)
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")) or "client_id" not in params:
            return HTTPStatus.BAD_REQUEST, {}
        answer: dict[str, str] = {"state": params["state"]} if "state" in params else {}
        if refusal is not None:
            answer["error"] = refusal
        elif params.get("code_challenge_method") != "S256" or "code_challenge" not in params:
            answer["error"] = "invalid_request"
        else:
            code = secrets.token_urlsafe(16)
            with self._lock:
                self._codes[code] = _Grant(
                    params["client_id"],
                    redirect_uri,
                    params["code_challenge"],
                    params.get("nonce"),
                    user,
                )
            answer["code"] = code
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return HTTPStatus.FOUND, {"location": redirect_uri + separator + urlencode(answer)}

    def _token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """Tokens for a valid code exchange (RFC 6749 §4.1.3, RFC 7636 §4.6), else an error."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            pair = base64.b64decode(authorization[6:]).decode()
            basic_id, _, basic_secret = pair.partition(":")
            client_id, secret = unquote(basic_id), unquote(basic_secret)
        with self._lock:
            grant = self._codes.pop(form.get("code", ""), None)  # a code works once
            registered = client_id in self._clients
            expected_secret = self._clients.get(client_id or "")
        if registered and expected_secret is not None and secret != expected_secret:
            return HTTPStatus.UNAUTHORIZED, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code" or grant is None:
            return HTTPStatus.BAD_REQUEST, {"error": "invalid_grant"}
        if grant.client_id != client_id or grant.redirect_uri != form.get("redirect_uri"):
            return HTTPStatus.BAD_REQUEST, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        digest = hashlib.sha256(verifier.encode()).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != grant.challenge:
            return HTTPStatus.BAD_REQUEST, {"error": "invalid_grant", "error_description": "PKCE"}
        nonce = {"nonce": grant.nonce} if grant.nonce is not None else {}
        return HTTPStatus.OK, {
            "token_type": "Bearer",
            "expires_in": 300,
            "access_token": self.mint(grant.claims),
            "id_token": self.mint({**grant.claims, "aud": grant.client_id, **nonce}),
        }

    def _answer(self, path: str) -> tuple[int, dict[str, Any]]:
        if path not in self._counts:
            return HTTPStatus.NOT_FOUND, {"error": "not_found"}
        with self._lock:
            self._counts[path] += 1
            self._lock.notify_all()
        self._answering.wait()
        if not self.available:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "temporarily_unavailable"}
        if path == JWKS_PATH:
            return HTTPStatus.OK, self.jwks()
        return HTTPStatus.OK, {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": sorted({k.algorithm for k in self.keys}),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up waiting (a cancelled request during hold()) is expected.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler_for(issuer: OidcIssuer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request per connection, so after stop() no kept-alive connection
        # lets a client keep reaching a "stopped" issuer.
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path == AUTHORIZE_PATH:
                status, headers = issuer._authorize(query)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "0")
                self.end_headers()
                return
            self._json(*issuer._answer(path))

        def do_POST(self) -> None:
            if self.path.partition("?")[0] != TOKEN_PATH:
                self._json(HTTPStatus.NOT_FOUND, {"error": "not_found"})
                return
            length = int(self.headers.get("content-length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            fields = {name: values[0] for name, values in form.items()}
            self._json(*issuer._token(fields, self.headers.get("authorization")))

        def _json(self, status: int, document: dict[str, Any]) -> None:
            body = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Quiet: pytest shows captured stderr on failure, and request lines are noise there.
            pass

    return _Handler
