"""What the MCP gateway adds to a tool call: the same MCP server's `echo` tool called directly
and through the gateway's `/mcp/{virtual_server}`, interleaved in rounds in one run, with the
official `mcp` client over loopback HTTP and one client session per path (opened before the
clock starts).

Paths: `direct` (the upstream, a real `MCPServer` over Streamable HTTP), `in_process` (the
gateway's FastAPI app under uvicorn in a thread of this process: authentication, group grant,
per-tool rate limit, input and output policy, audit record, the gateway's own upstream
session), `in_process_bare` (the same with the policy and the audit off: the MCP hop itself),
and with `--raygate`, `raygate_up` (the same config started by `raygate up`, behind
the Serve proxy). The arguments carry no personal data, so the policy scans and passes them.

Then the Responses API against chat completions on the same gateway and model (`sim-small`
on the simulator, no latency), with the official `openai` client: plain and streamed,
interleaved in rounds; in process and, with `--raygate`, through `raygate up`.

    .venv/bin/python -m benchmarks.mcp [--calls 400] [--rounds 8] [--raygate]

Prints a table and writes `benchmarks/results/mcp.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from benchmarks.report import ROOT, Report, latency_summary, markdown_table, progress
from gateway.config import parse_config
from gateway.simulator import SimulatorSettings
from gateway.simulator.app import create_app as create_simulator
from tests.servers.mcp_upstream import HttpUpstream, serve_asgi, serve_http

KEY = "sk-bench"
ARGUMENTS = {"text": "Summarise the open tickets of the platform team for this week."}


def gateway_config(upstream_url: str, state_dir: Path) -> dict[str, Any]:
    """The gateway under test: the embedded default's identity, policy and audit, no cache,
    and one virtual server over the benchmark's upstream."""
    config = yaml.safe_load((ROOT / "gateway" / "defaults" / "embedded.yaml").read_text())
    config["auth"]["dev_key"] = KEY
    config["storage"]["url"] = f"sqlite:///{state_dir}/raygate.db"
    config["cache"] = {"enabled": False}
    config["mcp"] = {
        "servers": {"bench": {"transport": "http", "url": upstream_url}},
        "virtual_servers": {"tools": {"servers": ["bench"]}},
    }
    return config


@contextlib.contextmanager
def in_process_gateway(config: dict[str, Any]) -> Iterator[str]:
    """The gateway's app (`create_api` over a router, no Ray) served on loopback."""
    from gateway.api import create_api
    from gateway.providers.registry import build_provider
    from gateway.routing.router import Router

    parsed = parse_config(yaml.safe_dump(config), env={})
    providers = {n: build_provider(n, p) for n, p in parsed.enabled_providers().items()}
    app = create_api(parsed, Router(parsed, providers))
    with serve_asgi(app, "gateway") as base:  # uvicorn runs the app's shutdown hooks
        yield f"{base}/mcp/tools"


@contextlib.contextmanager
def raygate_up(config: dict[str, Any]) -> Iterator[str]:
    """The same config started by `raygate up` (Ray, Serve, the proxy)."""
    from tests.support import running_gateway

    with tempfile.TemporaryDirectory(prefix="raygate-bench-mcp-") as tmp:
        config = {
            **config,
            "serve": {"host": "127.0.0.1", "port": "${RAYGATE_PORT}"},
            "storage": {"url": "sqlite:///${RAYGATE_STATE_DIR}/raygate.db"},
            "simulator": {"enabled": True, "port": "${RAYGATE_SIMULATOR_PORT}"},
        }
        path = Path(tmp) / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        state = Path(tmp) / "state"
        state.mkdir()
        with running_gateway(path, state) as (base_url, _):
            yield f"{base_url}/mcp/tools"


@contextlib.asynccontextmanager
async def session(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


async def timed_calls(client: Client, tool: str, calls: int) -> list[float]:
    """Latencies (ms) of `calls` sequential calls of `tool`."""
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        result = await client.call_tool(tool, ARGUMENTS)
        latencies.append((time.perf_counter() - started) * 1000)
        if result.is_error:
            raise RuntimeError(f"{tool} failed: {result.content}")
    return latencies


async def measure(paths: dict[str, tuple[str, str]], calls: int, rounds: int) -> dict[str, Any]:
    """Each path's latencies, `calls` per path split over `rounds` interleaved rounds (so that
    a slow moment of the machine falls on every path alike)."""
    headers = {"authorization": f"Bearer {KEY}"}
    latencies: dict[str, list[float]] = {name: [] for name in paths}
    async with contextlib.AsyncExitStack() as stack:
        clients = {
            name: await stack.enter_async_context(session(url, headers))
            for name, (url, _) in paths.items()
        }
        for name, (_, tool) in paths.items():  # warm: sessions, pools, the policy's caches
            await timed_calls(clients[name], tool, 20)
        per_round = max(calls // rounds, 1)
        for _ in progress(range(rounds), "rounds"):
            for name, (_, tool) in paths.items():
                latencies[name] += await timed_calls(clients[name], tool, per_round)
    return {name: latency_summary(values) for name, values in latencies.items()}


def added(summaries: dict[str, Any], base: str = "direct") -> dict[str, Any]:
    """What each gateway path adds to the direct call, at p50 and p99."""
    direct = summaries[base]
    return {
        name: {q: round(s[q] - direct[q], 2) for q in ("p50_ms", "p99_ms")}
        for name, s in summaries.items()
        if name != base
    }


QUESTION = "Summarise the open tickets of the platform team for this week."


def responses_vs_chat(base_url: str, calls: int, rounds: int) -> dict[str, Any]:
    """The Responses API against chat completions on the same gateway and model, with the
    official `openai` client: plain (to the whole answer) and streamed (to the stream's end),
    interleaved in rounds; what `/v1/responses` adds over `/v1/chat/completions`."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0)
    model = "sim-small"

    def chat_plain() -> None:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": QUESTION}]
        )

    def responses_plain() -> None:
        client.responses.create(model=model, input=QUESTION, store=False)

    def chat_stream() -> None:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        for _ in stream:
            pass

    def responses_stream() -> None:
        for _ in client.responses.create(model=model, input=QUESTION, store=False, stream=True):
            pass

    calls_by_name = {
        "chat_plain": chat_plain,
        "responses_plain": responses_plain,
        "chat_stream": chat_stream,
        "responses_stream": responses_stream,
    }
    latencies: dict[str, list[float]] = {name: [] for name in calls_by_name}
    for call in calls_by_name.values():  # warm: pools, the policy's caches
        for _ in range(10):
            call()
    per_round = max(calls // rounds, 1)
    for _ in progress(range(rounds), "responses vs chat"):
        for name, call in calls_by_name.items():
            for _ in range(per_round):
                started = time.perf_counter()
                call()
                latencies[name].append((time.perf_counter() - started) * 1000)
    summaries = {name: latency_summary(values) for name, values in latencies.items()}
    return {
        "paths": summaries,
        "responses_adds": {
            kind: {
                q: round(summaries[f"responses_{kind}"][q] - summaries[f"chat_{kind}"][q], 2)
                for q in ("p50_ms", "p99_ms")
            }
            for kind in ("plain", "stream")
        },
    }


def with_simulator(config: dict[str, Any], simulator_url: str) -> dict[str, Any]:
    """`config` answering `sim-small` from the simulator at `simulator_url` (no latency)."""
    return config | {
        "simulator": {"enabled": False},
        "providers": {"simulator": {"preset": "simulator", "base_url": f"{simulator_url}/v1"}},
        "models": {"sim-small": {"targets": ["simulator/sim-small"]}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400, help="calls per path")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--raygate", action="store_true", help="also through `raygate up`")
    args = parser.parse_args()
    for noisy in ("mcp", "httpx2", "httpx"):  # a log line per request would be measured too
        logging.getLogger(noisy).setLevel(logging.WARNING)
    report = Report("mcp", parameters=vars(args) | {"arguments": ARGUMENTS, "concurrency": 1})
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as state:
        upstream: HttpUpstream = stack.enter_context(serve_http("bench"))
        config = gateway_config(upstream.url, Path(state))
        bare = config | {"policy": {"enabled": False}, "audit": {"enabled": False}}
        paths = {
            "direct": (upstream.url, "echo"),
            "in_process": (stack.enter_context(in_process_gateway(config)), "bench__echo"),
            "in_process_bare": (stack.enter_context(in_process_gateway(bare)), "bench__echo"),
        }
        if args.raygate:
            paths["raygate_up"] = (stack.enter_context(raygate_up(config)), "bench__echo")
        summaries = asyncio.run(measure(paths, args.calls, args.rounds))
        simulator = stack.enter_context(serve_asgi(create_simulator(SimulatorSettings()), "sim"))
        gateways = {"in_process": in_process_gateway(with_simulator(config, simulator))}
        if args.raygate:
            gateways["raygate_up"] = raygate_up(config)  # its own simulator, no latency
        responses = {}
        for name, gateway in gateways.items():
            url = stack.enter_context(gateway).removesuffix("/mcp/tools")
            responses[name] = responses_vs_chat(url, args.calls // 2, args.rounds)
    overhead = added(summaries)
    rows = [
        [name, s["n"], s["p50_ms"], s["p90_ms"], s["p99_ms"], overhead.get(name, {}).get("p50_ms")]
        for name, s in summaries.items()
    ]
    print(markdown_table(["path", "n", "p50 ms", "p90 ms", "p99 ms", "added p50 ms"], rows))
    print("\n/v1/responses against /v1/chat/completions, same gateway and model:\n")
    rows = [
        [gateway, name, s["n"], s["p50_ms"], s["p99_ms"]]
        for gateway, result in responses.items()
        for name, s in result["paths"].items()
    ]
    print(markdown_table(["gateway", "call", "n", "p50 ms", "p99 ms"], rows))
    report.write(
        {
            "paths": summaries,
            "added_by_gateway": overhead,
            "responses_vs_chat": responses,
            "notes": "sequential calls over loopback HTTP, one client session per path; "
            "added = path minus direct at the same percentile, same run",
        }
    )


if __name__ == "__main__":
    sys.exit(main())
