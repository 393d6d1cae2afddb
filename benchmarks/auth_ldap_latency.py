"""Authentication cost per request: `LdapDirectory.authenticate`, uncached and cached.

Runs in one process against a real local OpenLDAP slapd (tests/servers/slapd.py, the seeded
test organisation). "Uncached" turns the login cache off (cache_ttl_s=0), so every call is
the full exchange over pooled connections: user search, bind, and the group searches for
alice's two nested groups. "Cached" repeats one login within the TTL: no directory traffic,
which the slapd bind counter confirms. Calls are sequential; each case is warmed first.
Prints a table and writes `benchmarks/results/auth_ldap.json`.

    .venv/bin/python benchmarks/auth_ldap_latency.py [--iterations 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests.servers when run as a script

from gateway.identity.ldap import LdapConfig, LdapDirectory  # noqa: E402
from tests.servers.slapd import (  # noqa: E402
    ALICE,
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)

RESULTS = ROOT / "benchmarks" / "results" / "auth_ldap.json"


def _row(case: str, samples_ns: list[int], binds: int) -> dict[str, Any]:
    millis = sorted(ns / 1e6 for ns in samples_ns)
    return {
        "case": case,
        "iterations": len(millis),
        "p50_ms": round(statistics.median(millis), 3),
        "p99_ms": round(millis[min(len(millis) - 1, int(len(millis) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(millis), 3),
        "slapd_binds": binds,
    }


async def _time(slapd: Slapd, case: str, config: LdapConfig, iterations: int) -> dict[str, Any]:
    directory = LdapDirectory(config)
    for _ in range(max(1, iterations // 10)):  # warm: connections open, code paths hot
        await directory.authenticate("alice", ALICE.password)
    binds_before = slapd.bind_count()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter_ns()
        await directory.authenticate("alice", ALICE.password)
        samples.append(time.perf_counter_ns() - start)
    binds = slapd.bind_count() - binds_before
    await directory.aclose()
    return _row(case, samples, binds)


async def _run(slapd: Slapd, iterations: int) -> list[dict[str, Any]]:
    search = {
        "url": slapd.url,
        "bind_dn": SERVICE_DN,
        "bind_password": SERVICE_PASSWORD,
        "user_search_base": PEOPLE,
        "group_search_base": GROUPS,
    }
    template = {"url": slapd.url, "user_dn_template": f"uid={{username}},{PEOPLE}"}
    cases = [
        ("search-then-bind, uncached", LdapConfig(**search, cache_ttl_s=0)),
        (
            "search-then-bind over StartTLS, uncached",
            LdapConfig(**search, cache_ttl_s=0, start_tls=True, ca_file=slapd.ca_file),
        ),
        ("direct bind (DN template), uncached", LdapConfig(**template, cache_ttl_s=0)),
        ("search-then-bind, cached (within TTL)", LdapConfig(**search, cache_ttl_s=3600)),
    ]
    return [await _time(slapd, case, config, iterations) for case, config in cases]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    binary = shutil.which("slapd") or "/usr/sbin/slapd"
    if not os.access(binary, os.X_OK):
        print("slapd is not installed (apt-get install slapd)", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as workdir, Slapd(binary, Path(workdir), tls=True) as slapd:
        rows = asyncio.run(_run(slapd, args.iterations))

    lines = [
        "| case | iterations | p50 ms | p99 ms | mean ms | slapd binds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['case']} | {r['iterations']} | {r['p50_ms']} | {r['p99_ms']} | {r['mean_ms']} "
        f"| {r['slapd_binds']} |"
        for r in rows
    ]
    print("\n".join(lines))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    slapd_version = subprocess.run([binary, "-VV"], capture_output=True, text=True).stderr
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "auth_ldap",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "commit": commit or None,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "processor": _cpu_model(),
                    "slapd": slapd_version.splitlines()[0].strip() if slapd_version else None,
                    "ldap3": version("ldap3"),
                },
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
