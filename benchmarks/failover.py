"""Failover under load: what clients see while the primary target fails, and how fast it heals.

The Router runs IN-PROCESS here (no Ray, no HTTP ingress): this measures routing behaviour
(retries, breakers, health checks, ejection), not Serve overhead, which
`benchmarks/overhead.py` measures on the Ray path. Two simulator processes
(`python -m gateway.cli simulate`) are the upstreams; the alias is [primary, secondary].

Each scenario gets a fresh Router and runs three phases under steady load (c workers calling
the router back to back): `before` (both healthy), `during` (the primary fails), `after` (the
primary is healed; the phase ends once it is back in rotation, or at its time limit):

* down:  the primary process is killed (SIGKILL), then restarted on the same port.
* storm: the primary answers every request with 503.
* hang:  the primary never answers; streams fall over at the first-token timeout.
* cut:   the primary drops the connection after 2 chunks of every stream. Failures after the
         first chunk cannot be retried (the client already has part of an answer), so they
         reach the client as an error event; they are counted apart (`mid_stream`).

Per phase: requests sent / succeeded / failed as the client sees them, p50/p99 latency,
requests served by each target; per scenario: breaker transitions with their times, and time
to recover (from the heal to the primary's breaker closing on a successful probe).

    .venv/bin/python -m benchmarks.failover [--concurrency 8] [--phase-s 3 6 8]
        [--scenarios down storm hang cut] [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.report import ROOT, Report, percentile
from gateway.config import parse_config
from gateway.errors import GatewayError
from gateway.protocol.openai import ChatCompletionRequest
from gateway.routing.breaker import BreakerState, Transition
from gateway.routing.router import Route, Router

PHASES = ("before", "during", "after")
PRIMARY = "primary/sim-small"
SIM_LATENCY_MS = 20

CONFIG = """
cache: {{enabled: false}}  # every request must reach an upstream
providers:
  primary:
    preset: simulator
    base_url: http://127.0.0.1:{primary}/v1
    timeouts: {{connect: 0.5, first_token: 1.0, total: 10}}
  secondary:
    preset: simulator
    base_url: http://127.0.0.1:{secondary}/v1
    timeouts: {{connect: 0.5, first_token: 1.0, total: 10}}
routing:
  retry: {{max_attempts: 2, base_delay: 0.05, max_delay: 0.5, deadline: 5}}
  breaker: {{window: 5, min_requests: 5, failure_rate: 0.5, cooldown: 1, max_cooldown: 4}}
  outlier: {{consecutive_failures: 3, ejection: 1}}
  health_checks:
    primary: {{path: /models, interval: 0.5, timeout: 0.5, unhealthy_after: 2}}
    secondary: {{path: /models, interval: 0.5, timeout: 0.5, unhealthy_after: 2}}
models:
  bench: {{targets: [primary/sim-small, secondary/sim-small]}}
"""


@dataclass
class Scenario:
    name: str
    stream: bool
    description: str


SCENARIOS = [
    Scenario("down", False, "primary process killed, then restarted"),
    Scenario("storm", False, "primary answers 503 to everything"),
    Scenario("hang", True, "primary never answers (first-token timeout 1 s)"),
    Scenario("cut", True, "primary cuts every stream after 2 chunks"),
]


@dataclass
class Outcome:
    phase: str
    started: float
    latency_ms: float
    ok: bool
    served_by: str | None = None
    skipped_or_failed: list[str] = field(default_factory=list)
    mid_stream: bool = False
    error: str | None = None


@dataclass
class Simulator:
    """One `raygate simulate` process on a fixed port, which can be killed and restarted."""

    port: int
    proc: subprocess.Popen[bytes] | None = None
    log: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [sys.executable, "-m", "gateway.cli", "simulate", "--port", str(self.port)]
        args += ["--latency-ms", str(SIM_LATENCY_MS), "--seed", "1"]
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    async def ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.url}/healthz", timeout=1)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError(f"simulator on {self.port} did not start")

    async def fault(self, **fault: Any) -> None:
        async with httpx.AsyncClient() as client:
            body = {"faults": [fault]}
            (await client.post(f"{self.url}/_sim/faults", json=body)).raise_for_status()

    async def clear_faults(self) -> None:
        async with httpx.AsyncClient() as client:
            (await client.delete(f"{self.url}/_sim/faults")).raise_for_status()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def one_request(router: Router, stream: bool, phase: str, t0: float) -> Outcome:
    request = ChatCompletionRequest(
        model="bench", messages=[{"role": "user", "content": "Is the primary up?"}], stream=stream
    )
    started = time.monotonic()
    outcome = Outcome(phase, started - t0, 0.0, ok=False)
    route: Route | None = None
    try:
        if stream:
            opened = await router.chat_stream(request)
            route = opened.route
            async for _ in opened.chunks:
                pass
        else:
            route = (await router.chat(request)).route
        outcome.ok = True
    except GatewayError as exc:
        outcome.error = f"{exc.status} {exc.code}"
        outcome.mid_stream = route is not None  # the route came, so the stream had started
    outcome.latency_ms = (time.monotonic() - started) * 1000
    if route is not None:
        outcome.served_by = route.target
        outcome.skipped_or_failed = list(route.failed)
    return outcome


class Load:
    """c workers calling the router back to back; each outcome is tagged with the phase."""

    def __init__(self, router: Router, concurrency: int, stream: bool) -> None:
        self.router = router
        self.concurrency = concurrency
        self.stream = stream
        self.phase = PHASES[0]
        self.t0 = time.monotonic()
        self.outcomes: list[Outcome] = []
        self._running = True
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*self._tasks)

    async def _worker(self) -> None:
        while self._running:
            self.outcomes.append(await one_request(self.router, self.stream, self.phase, self.t0))


def _percentile(values: list[float], q: int) -> float | None:
    found = percentile(values, q)
    return None if found is None else round(found, 1)


def _counts(items: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _phase_summary(outcomes: list[Outcome], seconds: float) -> dict[str, Any]:
    latencies = [o.latency_ms for o in outcomes if o.ok]
    return {
        "seconds": round(seconds, 2),
        "sent": len(outcomes),
        "succeeded": sum(o.ok for o in outcomes),
        "failed": sum(not o.ok for o in outcomes),
        "failed_before_first_chunk": sum(not o.ok and not o.mid_stream for o in outcomes),
        "failed_mid_stream": sum(not o.ok and o.mid_stream for o in outcomes),
        "rerouted": sum(o.ok and bool(o.skipped_or_failed) for o in outcomes),
        "rerouted_because": _counts(note for o in outcomes if o.ok for note in o.skipped_or_failed),
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        "served_by": _counts(o.served_by for o in outcomes if o.ok and o.served_by),
        "errors": _counts(o.error for o in outcomes if o.error),
    }


def primary_in_rotation(router: Router) -> bool:
    status = {t.target: t for t in router.status().targets}[PRIMARY]
    return status.breaker == "closed" and status.health not in ("unhealthy", "ejected")


def _recovered_at(transitions: list[Transition], healed_at: float) -> float | None:
    """When the primary's breaker first closed after the heal (a probe succeeded)."""
    closes = [
        t.at
        for t in transitions
        if t.target == PRIMARY and t.after is BreakerState.CLOSED and t.at >= healed_at
    ]
    return min(closes, default=None)


async def break_primary(scenario: Scenario, primary: Simulator) -> None:
    """Inject `scenario`'s fault into the primary simulator."""
    if scenario.name == "down":
        primary.kill()
    elif scenario.name == "storm":
        await primary.fault(kind="status", status=503, count=None)
    elif scenario.name == "hang":
        await primary.fault(kind="hang", count=None)
    elif scenario.name == "cut":
        await primary.fault(kind="cut", after_chunks=2, count=None)


async def heal_primary(scenario: Scenario, primary: Simulator) -> None:
    """Undo `break_primary`: restart the process, or clear the faults."""
    if scenario.name == "down":
        primary.start()
        await primary.ready()
    else:
        await primary.clear_faults()


async def run_scenario(
    scenario: Scenario,
    primary: Simulator,
    secondary: Simulator,
    concurrency: int,
    phase_s: tuple[float, float, float],
) -> dict[str, Any]:
    config = parse_config(CONFIG.format(primary=primary.port, secondary=secondary.port), env={})
    router = Router(config)
    # The router's clock is time.monotonic, so a transition's `at` is on the same clock as ours.
    transitions: list[Transition] = []
    router.subscribe(transitions.append)
    await router.start()
    load = Load(router, concurrency, scenario.stream)
    bounds: dict[str, tuple[float, float]] = {}
    healed_at = recovered_at = None
    load.start()
    try:
        start = time.monotonic()
        await asyncio.sleep(phase_s[0])
        bounds["before"] = (start, time.monotonic())

        load.phase = "during"
        start = time.monotonic()
        await break_primary(scenario, primary)
        await asyncio.sleep(phase_s[1])
        bounds["during"] = (start, time.monotonic())

        load.phase = "after"
        start = time.monotonic()
        await heal_primary(scenario, primary)
        healed_at = time.monotonic()
        if primary_in_rotation(router):
            recovered_at = healed_at  # it never left (or came back before the heal)
        await asyncio.sleep(phase_s[2])
        bounds["after"] = (start, time.monotonic())
    finally:
        await load.stop()
        status = router.status()
        await router.aclose()
    if recovered_at is None and healed_at is not None:
        recovered_at = _recovered_at(transitions, healed_at)
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "stream": scenario.stream,
        "phases": {
            phase: _phase_summary([o for o in load.outcomes if o.phase == phase], end - begin)
            for phase, (begin, end) in bounds.items()
        },
        "transitions": [
            {
                "t_s": round(t.at - load.t0, 3),
                "target": t.target,
                "from": str(t.before),
                "to": str(t.after),
                "reason": t.reason,
            }
            for t in transitions
        ],
        "heal_at_s": None if healed_at is None else round(healed_at - load.t0, 3),
        "time_to_recover_s": (
            None
            if recovered_at is None or healed_at is None
            else round(recovered_at - healed_at, 3)
        ),
        "primary_trips": {t.target: t.trips for t in status.targets}[PRIMARY],
    }


def _table(results: list[dict[str, Any]]) -> str:
    head = (
        f"{'scenario':<8} {'phase':<7} {'sent':>6} {'ok':>6} {'failed':>6} {'mid':>4} "
        f"{'rerouted':>8} {'p50 ms':>8} {'p99 ms':>8}  served by (primary/secondary)"
    )
    lines = [head, "-" * len(head)]
    for result in results:
        for phase, s in result["phases"].items():
            served = s["served_by"]
            split = f"{served.get(PRIMARY, 0)}/{served.get('secondary/sim-small', 0)}"
            lines.append(
                f"{result['scenario']:<8} {phase:<7} {s['sent']:>6} {s['succeeded']:>6} "
                f"{s['failed']:>6} {s['failed_mid_stream']:>4} {s['rerouted']:>8} "
                f"{s['p50_ms'] or 0:>8.1f} {s['p99_ms'] or 0:>8.1f}  {split}"
            )
        lines.append(
            f"{'':<8} recover: {result['time_to_recover_s']} s after heal; "
            f"primary trips: {result['primary_trips']}; transitions: "
            + ", ".join(
                f"{t['t_s']:.2f}s {t['from']}->{t['to']} ({t['reason']})"
                for t in result["transitions"]
                if t["target"] == PRIMARY
            )
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every scenario asked for, in order, against two simulators started here."""
    primary, secondary = Simulator(_free_port()), Simulator(_free_port())
    primary.start()
    secondary.start()
    results = []
    try:
        await asyncio.gather(primary.ready(), secondary.ready())
        for scenario in SCENARIOS:
            if args.scenarios and scenario.name not in args.scenarios:
                continue
            print(f"running {scenario.name}: {scenario.description}", flush=True)
            results.append(
                await run_scenario(
                    scenario, primary, secondary, args.concurrency, tuple(args.phase_s)
                )
            )
    finally:
        primary.stop()
        secondary.stop()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--phase-s", type=float, nargs=3, default=[3.0, 6.0, 8.0], help="before during after"
    )
    parser.add_argument("--scenarios", nargs="*", choices=[s.name for s in SCENARIOS])
    parser.add_argument("--out", type=Path, help="write the JSON here, not under results/")
    args = parser.parse_args()
    report = Report("failover", parameters=vars(args))
    results = asyncio.run(run(args))
    print(_table(results))
    report.write(
        {
            "setup": {
                "path": "Router in-process (no Ray, no HTTP ingress)",
                "concurrency": args.concurrency,
                "phase_s": args.phase_s,
                "simulator_latency_ms": SIM_LATENCY_MS,
                "config": CONFIG.format(primary="PRIMARY_PORT", secondary="SECONDARY_PORT"),
            },
            "results": results,
        },
        path=args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
