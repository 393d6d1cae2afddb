"""A real OpenID Connect issuer on a loopback port, for tests that validate tokens.

`OidcIssuer` serves `/.well-known/openid-configuration` and a JWKS over plain HTTP from a
thread, counts how often each is fetched, lets a test rotate its keys (add a kid, drop one)
or take it down mid-test, and mints tokens with any claims, headers and key:

    with OidcIssuer() as issuer:
        token = issuer.mint({"groups": ["eng"]})
        config = OidcConfig(issuer=issuer.url, audience=issuer.audience)

Keys are generated locally with `cryptography`; nothing leaves the machine.
"""

from __future__ import annotations

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

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes, PublicKeyTypes

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/jwks"

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
            status, document = issuer._answer(self.path.split("?", 1)[0])
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
