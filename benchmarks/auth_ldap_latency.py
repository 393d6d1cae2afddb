"""Authentication cost per request: `LdapDirectory.authenticate`, uncached and cached.

Runs in one process against a real local OpenLDAP slapd (tests/servers/slapd.py, the seeded
test organisation). "Uncached" turns the login cache off (cache_ttl_s=0), so every call is
the full exchange over pooled connections: user search, bind, and the group searches for
alice's two nested groups. "Cached" repeats one login within the TTL: no directory traffic,
which the slapd bind counter confirms. Calls are sequential; each case is warmed first.
Prints a table and writes `benchmarks/results/auth_ldap.json`.

    .venv/bin/python -m benchmarks.auth_ldap_latency [--iterations 200] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks.report import Report, latency_summary, markdown_table
from gateway.identity.ldap import LdapConfig, LdapDirectory
from tests.servers.slapd import (
    ALICE,
    GROUPS,
    PEOPLE,
    SERVICE_DN,
    SERVICE_PASSWORD,
    Slapd,
)


def _row(case: str, samples_ns: list[int], binds: int) -> dict[str, Any]:
    summary = latency_summary([ns / 1e6 for ns in samples_ns], digits=3)
    return {
        "case": case,
        "iterations": summary["n"],
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "mean_ms": summary["mean_ms"],
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
    parser.add_argument("--out", type=Path, help="write the JSON here, not under results/")
    args = parser.parse_args()
    report = Report("auth_ldap", parameters=vars(args))
    binary = shutil.which("slapd") or "/usr/sbin/slapd"
    if not os.access(binary, os.X_OK):
        print("slapd is not installed (apt-get install slapd)", file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory() as workdir, Slapd(binary, Path(workdir), tls=True) as slapd:
        rows = asyncio.run(_run(slapd, args.iterations))

    table = markdown_table(
        ["case", "iterations", "p50 ms", "p99 ms", "mean ms", "slapd binds"],
        [
            [r["case"], r["iterations"], r["p50_ms"], r["p99_ms"], r["mean_ms"], r["slapd_binds"]]
            for r in rows
        ],
        align="lrrrrr",
    )
    print(table)
    slapd_version = subprocess.run([binary, "-VV"], capture_output=True, text=True).stderr
    software = {
        "slapd": slapd_version.splitlines()[0].strip() if slapd_version else None,
        "ldap3": version("ldap3"),
    }
    report.write({"software": software, "rows": rows, "table_markdown": table}, path=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
