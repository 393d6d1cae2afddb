"""Authentication latency per method, side by side in one run, through the gateway's own
`Authenticator` (what the ingress pays per request before anything else).

Methods: the developer key, an issued API key (HMAC lookup in SQLite), an issued key whose
owner is resolved in LDAP, trusted proxy headers, an OIDC JWT (RS256 and ES256, JWKS warm),
and HTTP Basic against LDAP (first bind uncached, then within the cache TTL). LDAP runs
against a real slapd (skipped when it is not installed); OIDC against the loopback test
issuer. Prints a table and writes `benchmarks/results/auth.json`.

    .venv/bin/python -m benchmarks.auth [--iterations 1000] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers

from benchmarks.report import Report, markdown_table, percentile
from gateway.config import AuthConfig
from gateway.identity.authenticator import Authenticator
from gateway.identity.keys import KeyStore
from gateway.identity.ldap import LdapDirectory
from gateway.identity.ldap_config import LdapConfig
from gateway.identity.oidc import OidcVerifier
from gateway.identity.oidc_config import OidcConfig
from gateway.identity.principal import Principal
from gateway.identity.trusted_header import TrustedHeaderAuth, TrustedHeaderConfig
from gateway.identity.users import UserStore
from gateway.storage import Database
from tests.servers.oidc_issuer import OidcIssuer
from tests.servers.slapd import (
    ALICE,
    BOB,
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)

DEV_KEY = "sk-bench-dev"
Call = Callable[[], Awaitable[Principal]]


async def _time(call: Call, iterations: int) -> list[float]:
    await call()  # warm: pools, caches, JWKS
    samples = []
    for _ in range(iterations):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def _row(method: str, samples_us: list[float], note: str = "") -> dict[str, Any]:
    p50, p99 = percentile(samples_us, 50), percentile(samples_us, 99)
    return {
        "method": method,
        "iterations": len(samples_us),
        "p50_us": None if p50 is None else round(p50, 1),
        "p99_us": None if p99 is None else round(p99, 1),
        "note": note,
    }


def _basic(username: str, password: str) -> Headers:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return Headers({"authorization": f"Basic {token}"})


async def _measure(iterations: int, slapd: Slapd | None) -> list[dict[str, Any]]:
    tmp = Path(tempfile.mkdtemp(prefix="raygate-auth-bench-"))
    db = Database(f"sqlite:///{tmp}/bench.db")
    keys = KeyStore(db, "benchmark-key-secret-0123456789")
    users = UserStore(db)
    users.upsert(Principal("carol", "local", department="finance", groups=("finance",)))
    local_key = keys.issue("carol").secret
    ldap = ldap_config = None
    if slapd is not None:
        ldap_config = LdapConfig(
            url=slapd.url,
            bind_dn=SERVICE_DN,
            bind_password=SERVICE_PASSWORD,
            user_search_base=PEOPLE,
            group_search_base=GROUPS,
        )
        ldap = LdapDirectory(ldap_config)
    issuer = OidcIssuer(audience="raygate").start()
    oidc = OidcVerifier(OidcConfig(issuer=issuer.url, audience="raygate"))
    trusted = TrustedHeaderAuth(TrustedHeaderConfig(trusted_proxies=["10.0.0.0/8"]))
    auth = Authenticator(
        AuthConfig(dev_key=DEV_KEY), keys=keys, users=users, ldap=ldap, oidc=oidc, trusted=trusted
    )
    rows = []
    try:

        def bearer(secret: str) -> Call:
            headers = Headers({"authorization": f"Bearer {secret}"})
            return lambda: auth.authenticate(headers, "127.0.0.1")

        rows.append(_row("developer key", await _time(bearer(DEV_KEY), iterations)))
        rows.append(
            _row(
                "issued API key",
                await _time(bearer(local_key), iterations),
                "HMAC + one SQLite lookup + owner",
            )
        )
        proxy = Headers({"x-forwarded-user": "dave", "x-forwarded-groups": "a,b"})
        rows.append(
            _row(
                "trusted proxy headers",
                await _time(lambda: auth.authenticate(proxy, "10.1.2.3"), iterations),
            )
        )
        for algorithm in ("RS256", "ES256"):
            key = next(k for k in issuer.keys if k.algorithm == algorithm)
            tokens = iter([issuer.mint({"sub": f"u{i}"}, key=key) for i in range(iterations + 1)])

            async def verify_next(tokens: Any = tokens) -> Principal:
                headers = Headers({"authorization": f"Bearer {next(tokens)}"})
                return await auth.authenticate(headers, "127.0.0.1")

            rows.append(
                _row(f"OIDC JWT {algorithm}", await _time(verify_next, iterations), "JWKS warm")
            )
        if ldap is not None and ldap_config is not None:
            ldap_key = keys.issue(BOB.uid).secret
            rows.append(
                _row(
                    "issued key, owner in LDAP",
                    await _time(bearer(ldap_key), iterations),
                    "lookup cached within TTL",
                )
            )
            cached = _basic(ALICE.uid, ALICE.password)
            rows.append(
                _row(
                    "LDAP basic, cached",
                    await _time(lambda: auth.authenticate(cached, "127.0.0.1"), iterations),
                    "within cache_ttl_s",
                )
            )
            uncached_samples = []
            for _ in range(min(iterations, 200)):
                fresh = LdapDirectory(ldap_config)  # a new cache each time: a real bind
                uncached = Authenticator(AuthConfig(), ldap=fresh)
                started = time.perf_counter()
                await uncached.authenticate(cached, "127.0.0.1")
                uncached_samples.append((time.perf_counter() - started) * 1e6)
                await fresh.aclose()
            rows.append(
                _row(
                    "LDAP basic, uncached",
                    uncached_samples,
                    "search + bind + group search (+ connection setup)",
                )
            )
    finally:
        await auth.aclose()
        issuer.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--out", type=Path, help="write the JSON here, not under results/")
    args = parser.parse_args()
    report = Report("auth", parameters=vars(args))
    binary = shutil.which("slapd") or next(
        (p for p in ("/usr/sbin/slapd",) if os.access(p, os.X_OK)), None
    )
    if binary is None:
        print("slapd not installed: LDAP rows skipped")
        rows = asyncio.run(_measure(args.iterations, None))
    else:
        with tempfile.TemporaryDirectory() as workdir, Slapd(binary, Path(workdir)) as slapd:
            rows = asyncio.run(_measure(args.iterations, slapd))
    table = markdown_table(
        ["method", "p50 µs", "p99 µs", "note"],
        [[r["method"], r["p50_us"], r["p99_us"], r["note"]] for r in rows],
        align="lrrl",
    )
    print(table)
    report.write({"rows": rows, "table_markdown": table}, path=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
