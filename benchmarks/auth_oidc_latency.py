"""Authentication cost per request: OIDC `verify()` with a warm JWKS, and trusted headers.

Runs in one process against the loopback test issuer (tests/servers/oidc_issuer.py). The
JWKS is fetched once before timing starts, so the figures are the local work a request pays:
parsing, the signature check and the claim checks. Every timed call gets a distinct token.
Prints a table and writes `benchmarks/results/auth_oidc.json`.

    .venv/bin/python benchmarks/auth_oidc_latency.py [--iterations 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.servers when run as a script

from starlette.datastructures import Headers  # noqa: E402

from gateway.identity.oidc import OidcConfig, OidcVerifier  # noqa: E402
from gateway.identity.trusted_header import TrustedHeaderAuth, TrustedHeaderConfig  # noqa: E402
from tests.servers.oidc_issuer import OidcIssuer, SigningKey  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "auth_oidc.json"


def _row(case: str, samples_ns: list[int]) -> dict[str, Any]:
    micros = sorted(ns / 1000 for ns in samples_ns)
    return {
        "case": case,
        "iterations": len(micros),
        "p50_us": round(statistics.median(micros), 1),
        "p99_us": round(micros[min(len(micros) - 1, int(len(micros) * 0.99))], 1),
        "mean_us": round(statistics.fmean(micros), 1),
    }


async def _time_verify(verifier: OidcVerifier, tokens: list[str]) -> list[int]:
    samples = []
    for token in tokens:
        start = time.perf_counter_ns()
        await verifier.verify(token)
        samples.append(time.perf_counter_ns() - start)
    return samples


def _time_trusted_header(iterations: int) -> list[int]:
    authenticator = TrustedHeaderAuth(
        TrustedHeaderConfig(trusted_proxies=["10.0.0.0/8", "fd00::/8"], shared_secret="s" * 32)
    )
    requests = [
        Headers(
            {
                "x-forwarded-user": f"user-{i}",
                "x-forwarded-email": f"user-{i}@example.com",
                "x-forwarded-preferred-username": f"User {i}",
                "x-forwarded-groups": "eng, ml-platform, staff",
                "x-raygate-proxy-secret": "s" * 32,
                "user-agent": "openai-python/1.40",
            }
        )
        for i in range(iterations)
    ]
    samples = []
    for headers in requests:
        start = time.perf_counter_ns()
        authenticator.authenticate(headers, "10.1.2.3")
        samples.append(time.perf_counter_ns() - start)
    return samples


async def _run(iterations: int) -> tuple[list[dict[str, Any]], int]:
    keys = [SigningKey.generate("RS256", kid="rsa"), SigningKey.generate("ES256", kid="ec")]
    with OidcIssuer(keys) as issuer:
        verifier = OidcVerifier(OidcConfig(issuer=issuer.url, audience=issuer.audience))
        claims = {"email": "a@example.com", "groups": ["eng", "staff"], "roles": ["developer"]}
        await verifier.verify(issuer.mint(claims, key=keys[0]))  # warm: discovery + JWKS
        rows = []
        for key in keys:
            tokens = [issuer.mint({**claims, "sub": f"u{i}"}, key=key) for i in range(iterations)]
            await _time_verify(verifier, tokens[: iterations // 10])  # warm the code paths
            samples = await _time_verify(verifier, tokens)
            rows.append(_row(f"OidcVerifier.verify {key.algorithm} (warm JWKS)", samples))
        await verifier.aclose()
        fetches = issuer.jwks_fetches
    _time_trusted_header(iterations // 10)
    rows.append(_row("TrustedHeaderAuth.authenticate", _time_trusted_header(iterations)))
    return rows, fetches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()

    rows, fetches = asyncio.run(_run(args.iterations))

    lines = ["| case | iterations | p50 µs | p99 µs | mean µs |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {r['case']} | {r['iterations']} | {r['p50_us']} | {r['p99_us']} | {r['mean_us']} |"
        for r in rows
    ]
    print("\n".join(lines))
    print(f"\nJWKS fetches during the run: {fetches} (1 expected: the warm-up)")
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "auth_oidc",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "commit": commit or None,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "processor": _cpu_model(),
                },
                "jwks_fetches": fetches,
                "rows": rows,
                "table_markdown": "\n".join(lines),
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return models[0] if models else platform.processor() or None


if __name__ == "__main__":
    sys.exit(main())
