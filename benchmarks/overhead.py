"""Gateway overhead: the simulator direct, a bare Serve forwarder, raygate's miss path, and
LiteLLM's proxy (the gateway a user would pick instead).

raygate's miss path is measured twice: with its cache off, every request the same body (the
path itself), and with its cache on as shipped, every request a question it has not seen
(`CACHED`: each is embedded, looked up, answered upstream and stored).

All four are measured interleaved per concurrency level against one simulator (zero added
latency, so every millisecond measured is the path's own), once per set of Ray Serve settings
(`PROFILES`), each on a fresh Ray. LiteLLM's proxy runs from its own virtual environment (its
pins would fight raygate's), one worker, no database, a master key as raygate has an API key:

    python3 -m venv .bench/litellm && .bench/litellm/bin/pip install "litellm[proxy]==1.108.7"

(1.108.7 is the newest whose `proxy` extra installs from the registry here: later ones need a
`litellm-proxy` package that is not published there.)

Without it (`--litellm` names another executable) its row is left out and the JSON says so.
With `--compare REV`, raygate at commit REV (checked out in a temporary worktree) is measured
in the same run, in alternating rounds with the working tree's, so a change's cost is read
side by side on one machine in one run. With `--ingress-replicas 1 2`, raygate is deployed
once per count of ingress replicas, each its own Serve app and row (the first at `/`, as
"raygate (miss path)"; each other count N at `/ingressN`). Prints a table and writes
`benchmarks/results/overhead.json` (or `--out`).

    .venv/bin/python -m benchmarks.overhead [--requests 400] [--concurrency 1 8 64]
        [--profiles default throughput haproxy] [--compare REV] [--rounds 2] [--litellm EXE]
        [--ingress-replicas 1 2] [--out PATH]
"""

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx
from fastapi import FastAPI, Request, Response
from ray import serve
from ray.serve import Deployment

from benchmarks.paraphrase_sets import DEFAULT_DATA
from benchmarks.report import ROOT, Report, latency_summary, markdown_table, progress
from deployments.local import haproxy_env
from gateway.haproxy import SECRET_ENV

BODY = {"model": "sim-small", "messages": [{"role": "user", "content": "How far is the moon?"}]}
KEY = "sk-bench"
# raygate with its cache on, as shipped, each request a question it has not seen.
CACHED = "raygate, cache on, new questions"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready")


BARE_API = FastAPI()


@serve.deployment(
    name="BareForwarder", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256
)
@serve.ingress(BARE_API)
class BareForwarder:
    """Only forwards the body to the upstream: the floor any Serve gateway pays.

    (This module has no `from __future__ import annotations`: Serve pickles this class by
    value, and FastAPI could not resolve the string annotation `Request` from the pickle.)
    """

    def __init__(self, upstream: str) -> None:
        self._client = httpx.AsyncClient(base_url=upstream, timeout=60)

    @BARE_API.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Response:
        upstream = await self._client.post("/v1/chat/completions", content=await request.body())
        return Response(upstream.content, upstream.status_code, media_type="application/json")


LITELLM_DEFAULT = ROOT / ".bench" / "litellm" / "bin" / "litellm"


def _litellm_config(sim_url: str) -> str:
    """LiteLLM's proxy config: the simulator as an OpenAI-compatible model, a master key."""
    return f"""
model_list:
  - model_name: sim-small
    litellm_params: {{model: openai/sim-small, api_base: "{sim_url}/v1", api_key: sk-sim}}
general_settings: {{master_key: {KEY}}}
litellm_settings: {{telemetry: false, drop_params: true}}
"""


def _start_litellm(exe: Path, sim_url: str, port: int, scratch: Path) -> subprocess.Popen[bytes]:
    config = scratch / "litellm.yaml"
    config.write_text(_litellm_config(sim_url))
    command = [str(exe), "--config", str(config), "--port", str(port), "--num_workers", "1"]
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False"}
    env.pop("PYTHONPATH", None)  # its own environment, not raygate's
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def _raygate_config(
    sim_url: str, serve_port: int, ingress_replicas: int, *, cache: bool = False
) -> str:
    """raygate's config for the benchmark: the cache off (every request of the plain load is
    the same: this measures the uncached path), or as shipped (`cache`: on)."""
    return f"""
serve: {{port: {serve_port}, ingress: {{num_cpus: 0.1, num_replicas: {ingress_replicas}}},
        router: {{num_cpus: 0.1}}, cache: {{num_cpus: 0.1}}}}
auth: {{dev_key: {KEY}}}
cache: {{enabled: {str(cache).lower()}}}
storage: {{url: "sqlite:///{tempfile.mkdtemp(prefix="raygate-bench-")}/raygate.db"}}
providers:
  simulator: {{preset: simulator, base_url: "{sim_url}/v1"}}
models:
  sim-small: {{targets: [simulator/sim-small]}}
"""


def _deploy(sim_url: str, serve_port: int, ingress_replicas: list[int]) -> None:
    """Start Serve with a bare forwarder at /bare and raygate at / (and, per other count of
    ingress replicas N, at /ingressN, with a database of its own), and raygate with its cache
    on, as shipped, at /cached."""
    import ray

    from deployments.app import build_app
    from gateway.config import parse_config

    # address="local": a fresh Ray, never a stale cluster that `ray start` left a record of.
    ray.init(
        address="local", num_cpus=os.cpu_count() or 2, logging_level="ERROR", log_to_driver=False
    )
    serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    serve.run(cast(Deployment, BareForwarder).bind(sim_url), name="bare", route_prefix="/bare")
    for i, replicas in enumerate(ingress_replicas):  # the first at /, the others beside it
        config = parse_config(_raygate_config(sim_url, serve_port, replicas))
        name, prefix = ("raygate", "/") if i == 0 else (f"raygate{i}", f"/ingress{replicas}")
        serve.run(build_app({"config": config}), name=name, route_prefix=prefix)
    cached = parse_config(_raygate_config(sim_url, serve_port, 1, cache=True))
    serve.run(build_app({"config": cached}), name="raygate-cached", route_prefix="/cached")


def _questions() -> Iterator[str]:
    """Distinct questions (Quora's, from the paraphrase data), in a seeded order: a load on
    the cached gateway that sends each once is all misses but for the paraphrases among them
    (the responses' `x-raygate-cache` counts them)."""
    pairs = json.loads((DEFAULT_DATA / "gptcache_similar_qqp.json").read_text())
    questions = sorted({p["origin"] for p in pairs})
    random.Random(7).shuffle(questions)
    return iter(questions)


async def _load(
    url: str,
    concurrency: int,
    requests: int,
    headers: dict[str, str],
    questions: Iterator[str] | None = None,
) -> dict[str, Any]:
    """`requests` calls from `concurrency` clients: BODY each time, or, given `questions`,
    each call the next question."""
    # aiohttp, not httpx: on 2 cores httpx tops out near 150 req/s at c=64, below the paths.
    latencies: list[float] = []
    errors = 0
    queue = iter(range(requests))
    cache: Counter[str] = Counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def call() -> tuple[int, bytes]:
            body = BODY
            if questions is not None:
                body = {**BODY, "messages": [{"role": "user", "content": next(questions)}]}
            async with session.post(url, json=body) as response:
                cache[response.headers.get("x-raygate-cache", "none")] += 1
                return response.status, await response.read()

        async def worker() -> None:
            nonlocal errors
            for _ in queue:
                started = time.perf_counter()
                status, _ = await call()
                if status == 200:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1

        # Warm the connections and the replicas before timing.
        warm = await asyncio.gather(*(call() for _ in range(min(concurrency * 2, 64))))
        failed = [(status, body) for status, body in warm if status != 200]
        if failed:
            raise RuntimeError(f"{url} answered {failed[0][0]}: {failed[0][1][:300]!r}")
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    summary = latency_summary(latencies)
    return {
        "requests": requests,
        "errors": errors,
        "p50_ms": summary["p50_ms"],
        "p99_ms": summary["p99_ms"],
        "throughput_rps": round(len(latencies) / elapsed, 1),
        **({"x_raygate_cache": dict(cache)} if questions is not None else {}),
    }


# Ray Serve settings compared, each on a fresh Ray (they are read when Ray's processes start).
PROFILES: dict[str, dict[str, str]] = {
    "default": {},
    # Ray's bundle: gRPC between proxy and replicas, user code on the replica's own event loop,
    # buffered request logs, ingress replicas also listening directly. What `raygate up` ships.
    "throughput": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
    # HAProxy in front of directly-listening ingress replicas, run as `raygate up` runs it
    # (deployments/local.ray_env): through raygate-haproxy, with the request buffered, the
    # retries, and the client's address named to the ingress with the proxy secret.
    "haproxy": {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        **haproxy_env(),
        SECRET_ENV: "overhead-benchmark-proxy-secret",
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400, help="per path and level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=list(PROFILES))
    parser.add_argument("--compare", metavar="REV", help="also measure raygate at this commit")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per version")
    parser.add_argument(
        "--litellm", type=Path, default=LITELLM_DEFAULT, help="LiteLLM's `litellm` executable"
    )
    parser.add_argument(
        "--ingress-replicas", type=int, nargs="+", default=[1],
        help="raygate once per count of ingress replicas, side by side",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the JSON here, not under results/")
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    litellm = args.litellm if args.litellm.exists() else None
    if args.child_out is not None:
        rows = _measure(args.requests, args.concurrency, litellm, args.ingress_replicas)
        args.child_out.write_text(json.dumps(rows))
        return 0

    report = Report(
        "overhead",
        parameters=vars(args) | {"child_out": None, "litellm": _litellm_version(litellm)},
    )
    if litellm is None:
        print(f"LiteLLM's proxy left out: {args.litellm} does not exist", flush=True)
    versions = {"working tree": ROOT}
    with tempfile.TemporaryDirectory(prefix="raygate-compare-") as scratch:
        if args.compare:
            versions[args.compare] = _checkout(args.compare, Path(scratch) / "tree")
        rows = []
        for profile in args.profiles:
            for round_ in range(args.rounds):
                for version, tree in versions.items():
                    print(f"Serve settings: {profile}, {version}, round {round_ + 1}", flush=True)
                    found = _child(args, tree, PROFILES[profile], Path(scratch) / "rows.json")
                    rows += [{"serve": profile, "version": version, **row} for row in found]
        if args.compare:
            subprocess.run(
                ["git", "worktree", "remove", "--force", versions[args.compare]],
                cwd=ROOT,
                check=False,
            )
    _report(report, rows, profiles=args.profiles, out=args.out)
    return 0


def _checkout(rev: str, where: Path) -> Path:
    """`rev` checked out (detached) at `where`: the code the other version runs, measured by
    today's harness (`benchmarks/` and the progress bar it uses, copied over the old ones)."""
    subprocess.run(["git", "worktree", "add", "--detach", str(where), rev], cwd=ROOT, check=True)
    for harness in ("benchmarks/report.py", "benchmarks/overhead.py", "gateway/progress.py"):
        shutil.copyfile(ROOT / harness, where / harness)
    return where


def _child(args: argparse.Namespace, tree: Path, env: dict[str, str], out: Path) -> Any:
    """One measuring process (and its fresh Ray) on the code in `tree`: this script, with
    `tree` first on the path of the process and of the Ray workers it starts."""
    # As a module: run as a script, its folder would come first on the path, where
    # benchmarks/mcp.py stands in for the `mcp` package.
    command = [sys.executable, "-m", "benchmarks.overhead", "--child-out", str(out)]
    command += ["--requests", str(args.requests), "--concurrency", *map(str, args.concurrency)]
    command += ["--litellm", str(args.litellm)]
    command += ["--ingress-replicas", *map(str, args.ingress_replicas)]
    path = os.pathsep.join([str(tree), str(ROOT)])
    subprocess.run(command, check=True, cwd=tree, env={**os.environ, **env, "PYTHONPATH": path})
    return json.loads(out.read_text())


def _litellm_version(exe: Path | None) -> str | None:
    if exe is None:
        return None
    python = exe.parent / "python"
    found = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return found.stdout.strip() or None


def _measure(
    requests: int, levels: list[int], litellm: Path | None, ingress_replicas: list[int]
) -> list[dict[str, Any]]:
    """Every path at every concurrency level, interleaved, on one fresh Ray."""
    sim_port, serve_port, litellm_port = _free_port(), _free_port(), _free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scratch = Path(tempfile.mkdtemp(prefix="raygate-litellm-"))
    proxy = _start_litellm(litellm, sim_url, litellm_port, scratch) if litellm else None
    try:
        _wait(f"{sim_url}/healthz")
        if proxy is not None:
            _wait(f"http://127.0.0.1:{litellm_port}/health/liveliness", timeout_s=180)
        _deploy(sim_url, serve_port, ingress_replicas)
        serve_url = f"http://127.0.0.1:{serve_port}"
        _wait(f"{serve_url}/readyz")
        auth = {"authorization": f"Bearer {KEY}"}
        paths = {
            "simulator direct": (f"{sim_url}/v1/chat/completions", {}),
            "bare Serve forwarder": (f"{serve_url}/bare/v1/chat/completions", {}),
            "raygate (miss path)": (f"{serve_url}/v1/chat/completions", auth),
            CACHED: (f"{serve_url}/cached/v1/chat/completions", auth),
        }
        for replicas in ingress_replicas[1:]:
            paths[f"raygate, {replicas} ingress replicas"] = (
                f"{serve_url}/ingress{replicas}/v1/chat/completions",
                auth,
            )
        if proxy is not None:
            paths["LiteLLM proxy"] = (
                f"http://127.0.0.1:{litellm_port}/v1/chat/completions",
                auth,
            )
        rows = []
        questions = _questions()
        loads = list(itertools.product(levels, paths.items()))
        for concurrency, (name, (url, headers)) in progress(loads, "loads", unit="load"):
            asked = questions if name == CACHED else None
            result = asyncio.run(_load(url, concurrency, requests, headers, asked))
            rows.append({"path": name, "concurrency": concurrency, **result})
            print(f"  {name:22} c={concurrency:<3} {result}", flush=True)
    finally:
        simulator.terminate()
        if proxy is not None:
            proxy.terminate()
            proxy.wait(timeout=30)
        serve.shutdown()
    return rows


def _report(
    report: Report, rows: list[dict[str, Any]], *, profiles: list[str], out: Path | None
) -> None:
    summary = []
    for version in dict.fromkeys(r["version"] for r in rows):
        for profile in profiles:
            for concurrency in sorted({r["concurrency"] for r in rows}):
                same = [
                    r
                    for r in rows
                    if (r["version"], r["serve"], r["concurrency"])
                    == (version, profile, concurrency)
                ]

                def path(name: str, same: list[dict[str, Any]] = same) -> list[dict[str, Any]]:
                    return [r for r in same if r["path"] == name]

                bare, gate = path("bare Serve forwarder"), path("raygate (miss path)")
                cached = path(CACHED)
                sim, litellm = path("simulator direct"), path("LiteLLM proxy")
                entry = {
                    "version": version,
                    "serve": profile,
                    "concurrency": concurrency,
                    "added_p50_ms": _mean_diff(gate, bare, "p50_ms"),
                    "added_p99_ms": _mean_diff(gate, bare, "p99_ms"),
                    "raygate_p50_ms": _mean(gate, "p50_ms"),
                    "raygate_rps": _mean(gate, "throughput_rps"),
                    "raygate_over_upstream_p50_ms": _mean_diff(gate, sim, "p50_ms"),
                    "raygate_over_upstream_p99_ms": _mean_diff(gate, sim, "p99_ms"),
                }
                if cached:
                    entry |= {
                        "cache_on_p50_ms": _mean(cached, "p50_ms"),
                        "cache_on_rps": _mean(cached, "throughput_rps"),
                        "cache_on_added_p50_ms": _mean_diff(cached, bare, "p50_ms"),
                        "cache_on_added_p99_ms": _mean_diff(cached, bare, "p99_ms"),
                    }
                if litellm:
                    entry |= {
                        "litellm_over_upstream_p50_ms": _mean_diff(litellm, sim, "p50_ms"),
                        "litellm_over_upstream_p99_ms": _mean_diff(litellm, sim, "p99_ms"),
                        "litellm_rps": _mean(litellm, "throughput_rps"),
                        "rps_ratio_raygate_to_litellm": round(
                            _mean(gate, "throughput_rps") / _mean(litellm, "throughput_rps"), 3
                        ),
                    }
                summary.append(entry)
    table = markdown_table(
        ["version", "Serve settings", "path", "concurrency", "p50 ms", "p99 ms", "req/s", "errors"],
        [
            [
                r["version"],
                r["serve"],
                r["path"],
                r["concurrency"],
                r["p50_ms"],
                r["p99_ms"],
                r["throughput_rps"],
                r["errors"],
            ]
            for r in rows
        ],
        align="lllrrrrr",
    )
    added = markdown_table(
        [
            "version",
            "Serve settings",
            "concurrency",
            "raygate p50 ms",
            "req/s",
            "over bare Serve, p50",
            "p99",
            "cache on: p50 ms",
            "req/s",
            "over bare Serve, p50",
        ],
        [
            [
                s["version"],
                s["serve"],
                s["concurrency"],
                s["raygate_p50_ms"],
                s["raygate_rps"],
                f"{s['added_p50_ms']:+} ms",
                f"{s['added_p99_ms']:+} ms",
                s.get("cache_on_p50_ms", "-"),
                s.get("cache_on_rps", "-"),
                f"{s['cache_on_added_p50_ms']:+} ms" if "cache_on_p50_ms" in s else "-",
            ]
            for s in summary
        ],
        align="llrrrrrrrr",
    )
    against = [s for s in summary if "litellm_rps" in s]
    versus = markdown_table(
        [
            "version",
            "Serve settings",
            "concurrency",
            "added p50 ms: raygate",
            "LiteLLM",
            "added p99 ms: raygate",
            "LiteLLM",
            "req/s: raygate",
            "LiteLLM",
        ],
        [
            [
                s["version"],
                s["serve"],
                s["concurrency"],
                s["raygate_over_upstream_p50_ms"],
                s["litellm_over_upstream_p50_ms"],
                s["raygate_over_upstream_p99_ms"],
                s["litellm_over_upstream_p99_ms"],
                s["raygate_rps"],
                s["litellm_rps"],
            ]
            for s in against
        ],
        align="llrrrrrrr",
    )
    print(table, "\n\nraygate over the bare Serve forwarder (mean over rounds):\n" + added, sep="")
    if against:
        print("\nover the simulator called directly, raygate and LiteLLM's proxy:\n" + versus)
    report.write(
        {
            "profiles": {name: PROFILES[name] for name in profiles},
            "rows": rows,
            "raygate_over_bare_serve": summary,
            "table_markdown": table,
            "summary_markdown": added,
            "versus_litellm_markdown": versus if against else None,
        },
        path=out,
    )


def _mean(rows: list[dict[str, Any]], key: str) -> float:
    return round(sum(r[key] for r in rows) / len(rows), 2)


def _mean_diff(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> float:
    return round(_mean(a, key) - _mean(b, key), 2)


if __name__ == "__main__":
    sys.exit(main())
