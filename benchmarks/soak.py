"""Soak: mixed traffic with faults through `raygate up` for a bounded time; what broke, what
the replicas' memory did, and whether every request left exactly one audit record.

The gateway runs as the README starts it (`raygate up`, the built-in simulator, Ray Serve,
two cache replicas, the policy and the keyed audit trail on), on a config of this file's.
`--workers` clients send a mix, back to back: chat (whole and streamed, new and repeated
questions, so the cache answers some), Anthropic messages, embeddings, legacy completions,
and bad requests (malformed JSON, an unknown model, an oversized body). Every `--fault-every`
seconds a fault is injected in turn: a 503 storm on the primary (the alias falls over), hung
and cut streams, a malformed answer, and the simulator killed (its supervisor restarts it).

Reported: requests sent and their outcomes by status, 500s (a bug: the target is none), the
RSS of every Serve replica and of the proxy over time (PNG), and audit completeness: the
records written for the requests that got an answer, by request id, which must be equal.

    .venv/bin/python -m benchmarks.soak [--minutes 15] [--workers 8] [--fault-every 60]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import signal
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil

from benchmarks.report import RESULTS, Report, latency_summary, markdown_table, progress
from tests.support import running_gateway

KEY = "sk-soak-dev"
CONFIG = """
serve:
  host: 127.0.0.1
  port: ${RAYGATE_PORT}
  ingress: {num_cpus: 0.1}
  router: {num_cpus: 0.1}
  cache: {num_cpus: 0.2, num_replicas: 2}
auth:
  dev_key: sk-soak-dev
  admin_key: sk-soak-admin-0123456789
storage:
  url: sqlite:///${RAYGATE_STATE_DIR}/raygate.db
audit: {prompt: redacted, response: hash}
limits: {max_body_bytes: 1048576}
policy:
  profiles:
    default: {pii: {"*": redact}, output: {US_SSN: block}}
cache: {isolation: organisation}
simulator:
  enabled: true
  port: ${RAYGATE_SIMULATOR_PORT}
providers:
  primary:
    preset: simulator
    base_url: http://127.0.0.1:${RAYGATE_SIMULATOR_PORT}/v1
  backup:
    preset: simulator
    base_url: http://127.0.0.1:${RAYGATE_SIMULATOR_PORT}/v1
  claude:
    kind: anthropic
    base_url: http://127.0.0.1:${RAYGATE_SIMULATOR_PORT}
    api_key: simulated
models:
  soak: {targets: [primary/sim-primary, backup/sim-backup]}
  soak-claude: {targets: [claude/claude-sim]}
  soak-embed: {targets: [primary/sim-embed]}
"""
QUESTIONS = [
    "How do I reset my VPN password?",
    "What is our travel expense limit?",
    "Summarise the onboarding checklist.",
    "Which port does LDAPS use?",
    "How long are backups kept?",
    "Email the report to ana@example.org please.",
]
FAULTS = [
    {"kind": "status", "status": 503, "count": 40, "match_model": "sim-primary"},
    {"kind": "hang", "after_chunks": 2, "count": 3, "match_model": "sim-primary"},
    {"kind": "cut", "after_chunks": 2, "count": 5},
    {"kind": "malformed", "count": 5},
    "kill-simulator",
]


class Load:
    """The clients: each sends one request after another until told to stop."""

    def __init__(self, base: str, rng: random.Random) -> None:
        self.base = base
        self.rng = rng
        self.statuses: Counter[str] = Counter()
        self.request_ids: set[str] = set()
        self.no_answer = 0  # requests that got no HTTP answer at all (connection errors)
        self.latencies: list[float] = []
        self.broken_streams = 0  # streams that ended with an error event (never a clean end)
        self.sent = 0

    async def worker(self, client: httpx.AsyncClient, stop: asyncio.Event) -> None:
        fresh = itertools.count()
        while not stop.is_set():
            kind, method, path, body = self._next(fresh)
            self.sent += 1
            started = time.perf_counter()
            try:
                async with client.stream(method, path, **body) as response:
                    text = (await response.aread()).decode(errors="replace")
            except httpx.HTTPError:
                self.no_answer += 1
                continue
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.statuses[f"{kind} {response.status_code}"] += 1
            request_id = response.headers.get("x-raygate-request-id")
            if request_id:
                self.request_ids.add(request_id)
            if response.status_code == 200 and "stream" in kind and _broken(text):
                self.broken_streams += 1

    def _next(self, fresh: itertools.count[int]) -> tuple[str, str, str, dict[str, Any]]:
        roll = self.rng.random()
        question = self.rng.choice(QUESTIONS)
        if self.rng.random() < 0.3:
            question = f"{question} (variant {next(fresh)})"  # a new question: a miss
        chat = {"model": "soak", "messages": [{"role": "user", "content": question}]}
        if roll < 0.45:
            return "chat", "POST", "/v1/chat/completions", {"json": chat}
        if roll < 0.70:
            return "chat stream", "POST", "/v1/chat/completions", {"json": {**chat, "stream": True}}
        if roll < 0.78:
            message = {"model": "soak-claude", "max_tokens": 64, "messages": chat["messages"]}
            return "messages", "POST", "/v1/messages", {"json": message}
        if roll < 0.84:
            embed = {"model": "soak-embed", "input": question}
            return "embeddings", "POST", "/v1/embeddings", {"json": embed}
        if roll < 0.90:
            legacy = {"model": "soak", "prompt": question, "max_tokens": 32}
            return "completion", "POST", "/v1/completions", {"json": legacy}
        bad = self.rng.choice(
            [
                {"content": b'{"model": "soak", "messages": ['},
                {"json": {**chat, "model": "no-such-model"}},
                {"content": b'{"model": "soak", "pad": "' + b"x" * 2_000_000 + b'"}'},
            ]
        )
        return "bad input", "POST", "/v1/chat/completions", bad


def _broken(text: str) -> bool:
    events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return bool(events) and events[-1] != "[DONE]" and '"error"' in events[-1]


async def faults(sim_url: str, state_dir: Path, every_s: float, stop: asyncio.Event) -> list[Any]:
    """Inject one fault every `every_s`, in turn; what was injected, when."""
    injected: list[Any] = []
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=sim_url, timeout=10) as sim:
        for fault in itertools.cycle(FAULTS):
            try:
                await asyncio.wait_for(stop.wait(), every_s)
                return injected
            except TimeoutError:
                pass
            at = round(time.monotonic() - started, 1)
            if fault == "kill-simulator":
                pid = int((state_dir / "simulator.pid").read_text())
                os.kill(pid, signal.SIGKILL)
            else:
                try:
                    await sim.post("/_sim/faults", json={"faults": [fault]})
                except httpx.HTTPError:
                    pass  # restarting after a kill: this fault is skipped
            injected.append({"at_s": at, "fault": fault})
            print(f"  t={at:>6}s fault {fault}", flush=True)
    return injected


async def memory(every_s: float, stop: asyncio.Event) -> dict[str, list[tuple[float, float]]]:
    """RSS (MiB) of each Serve replica and of the proxy, sampled every `every_s`."""
    series: dict[str, list[tuple[float, float]]] = {}
    started = time.monotonic()
    while not stop.is_set():
        now = round(time.monotonic() - started, 1)
        for process in psutil.process_iter(["name", "cmdline"]):
            name = _serve_name(process)
            if name is None:
                continue
            try:
                rss = process.memory_info().rss / 2**20
            except psutil.Error:
                continue
            series.setdefault(name, []).append((now, round(rss, 1)))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
    return series


def _serve_name(process: psutil.Process) -> str | None:
    try:
        title = " ".join(process.info["cmdline"] or []) or process.info["name"] or ""
    except psutil.Error:
        return None
    for marker in ("ServeReplica:", "ServeController", "ProxyActor"):
        if marker in title:
            start = title.index(marker)
            return title[start:].split()[0].split(".")[0] + f" (pid {process.pid})"
    return None


def audited(db: Path, request_ids: set[str], deadline_s: float = 120) -> int:
    """How many of `request_ids` have an audit record, once the writers have caught up."""
    found, last_change, previous = 0, time.monotonic(), -1
    while time.monotonic() - last_change < 10 and time.monotonic() - last_change < deadline_s:
        with sqlite3.connect(db) as conn:
            ids = {row[0] for row in conn.execute("SELECT request_id FROM audit_records")}
        found = len(ids & request_ids)
        if found == len(request_ids):
            return found
        if found != previous:
            previous, last_change = found, time.monotonic()
        time.sleep(1)  # poll interval: the writers flush within a second
    return found


async def run(args: argparse.Namespace, base: str, env: dict[str, str]) -> dict[str, Any]:
    state_dir = Path(env["RAYGATE_STATE_DIR"])
    sim_url = f"http://127.0.0.1:{env['RAYGATE_SIMULATOR_PORT']}"
    load = Load(base, random.Random(7))
    stop = asyncio.Event()
    headers = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as client:
        workers = [asyncio.create_task(load.worker(client, stop)) for _ in range(args.workers)]
        injector = asyncio.create_task(faults(sim_url, state_dir, args.fault_every, stop))
        sampler = asyncio.create_task(memory(args.sample_every, stop))
        ends = time.monotonic() + args.minutes * 60
        every_s = 30.0  # a line of counts this often, and one at the end
        for _ in progress(range(math.ceil(args.minutes * 60 / every_s)), "soak", unit="report"):
            await asyncio.sleep(max(0.0, min(every_s, ends - time.monotonic())))
            print(f"  sent {load.sent}, answered {sum(load.statuses.values())}", flush=True)
        stop.set()
        await asyncio.gather(*workers)
        injected, series = await injector, await sampler
    records = await asyncio.to_thread(audited, state_dir / "raygate.db", load.request_ids)
    return {
        "sent": load.sent,
        "answered": sum(load.statuses.values()),
        "no_http_answer": load.no_answer,
        "by_kind_and_status": dict(sorted(load.statuses.items())),
        "server_errors_500": sum(n for k, n in load.statuses.items() if k.endswith(" 500")),
        "streams_ended_with_an_error_event": load.broken_streams,
        "latency": latency_summary(load.latencies),
        "audit": {
            "answered_with_a_request_id": len(load.request_ids),
            "records_found": records,
            "complete": records == len(load.request_ids),
        },
        "faults": injected,
        "memory_mib": series,
    }


def plot(series: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    for name, points in sorted(series.items()):
        ax.plot([t / 60 for t, _ in points], [m for _, m in points], label=name)
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title("Serve replicas' memory during the soak")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--fault-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds (memory)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report = Report("soak", parameters=vars(args))
    with tempfile.TemporaryDirectory(prefix="raygate-soak-") as scratch:
        config = Path(scratch) / "soak.yaml"
        config.write_text(CONFIG)
        with running_gateway(config, Path(scratch) / "state") as (base, env):
            found = asyncio.run(run(args, base, env))
    out = args.out or RESULTS / "soak.json"
    plot(found["memory_mib"], out.with_suffix(".png"))
    table = markdown_table(
        [
            "requests sent",
            "answered",
            "500s",
            "streams ended by an error event",
            "audit records / answered",
            "p50 ms",
            "p99 ms",
        ],
        [
            [
                found["sent"],
                found["answered"],
                found["server_errors_500"],
                found["streams_ended_with_an_error_event"],
                "{records_found} / {answered_with_a_request_id}".format(**found["audit"]),
                found["latency"]["p50_ms"],
                found["latency"]["p99_ms"],
            ]
        ],
        align="rrrrrrr",
    )
    print(table)
    print(json.dumps(found["by_kind_and_status"], indent=1))
    report.write({**found, "table_markdown": table}, path=out)
    return 0 if found["audit"]["complete"] and not found["server_errors_500"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
