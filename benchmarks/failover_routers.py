"""What separate routers cost when an upstream dies: failed attempts and time to agree.

Every ingress replica runs its own router (`serve.colocate_router`; with `false`, every Router
replica does), and breakers, health and latency are each router's own: nothing is shared
(cluster/README.md, "Router state across replicas"). A router learns that a target is down
from its own failed attempts, each of which falls over to the alias's next target, so not
sharing costs failed attempts on the dead target (no request fails) and time until every
router has stopped trying it. This measures both with 1, 2 and 4 routers side by side, in
one run: the routers run in process as in `benchmarks/failover.py` (its config: breaker
window 5 s, 5 requests and a 50 % failure rate to open; health checks every 0.5 s, unhealthy
after 2 misses; its two simulators and its `down` and `storm` faults), and `--concurrency`
workers deal their requests round-robin over the routers, as Serve spreads requests over
replicas, back to back or `--pause-ms` apart. `--defaults` leaves the breaker (30 s window,
10 requests, 50 %, cooldown 5 s) and the passive ejection (5 failures in a row) at their
defaults, as a config that sets neither has them (failover.py's: 3 in a row eject for 1 s).

Per (routers, scenario), from the fault to the heal: requests sent and failed as the client
sees them; failed attempts on the primary, in all and per router (the breaker's half-open
probes among them, until the heal); when each router first passed over the primary (all had
by the last of these). After the heal: how long until the last router had the primary back in
rotation.

    .venv/bin/python -m benchmarks.failover_routers [--routers 1 2 4] [--concurrency 8]
        [--phase-s 2 5 5] [--scenarios down storm] [--pause-ms 0] [--defaults]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.failover import (
    CONFIG,
    PRIMARY,
    SCENARIOS,
    Outcome,
    Scenario,
    Simulator,
    break_primary,
    heal_primary,
    one_request,
    primary_in_rotation,
)
from benchmarks.report import RESULTS, Report, markdown_table
from gateway.config import parse_config
from gateway.routing.router import Router
from tests.support import free_port

FAULTS = ("down", "storm")  # the faults a router learns of from its own calls or probes


class RoundRobinLoad:
    """`concurrency` workers calling back to back, each call on the next router in turn."""

    def __init__(self, routers: list[Router], concurrency: int, pause_s: float = 0.0) -> None:
        self.routers = routers
        self.pause_s = pause_s  # each worker's wait between its calls
        self.phase = "before"
        self.t0 = time.monotonic()
        self.outcomes: list[tuple[int, Outcome]] = []  # (router index, outcome)
        self._turn = itertools.count()
        self._running = True
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(concurrency)]

    async def stop(self) -> None:
        self._running = False
        await asyncio.gather(*self._tasks)

    async def _worker(self) -> None:
        while self._running:
            index = next(self._turn) % len(self.routers)
            outcome = await one_request(self.routers[index], False, self.phase, self.t0)
            self.outcomes.append((index, outcome))
            if self.pause_s:
                await asyncio.sleep(self.pause_s)


def skipped_primary(outcome: Outcome) -> bool:
    """Whether the router passed over the primary (breaker open, or marked unhealthy)."""
    return any(note.startswith(f"{PRIMARY}:") and not note.rpartition(":")[2].isdigit()
               for note in outcome.skipped_or_failed)  # fmt: skip


def failed_attempts(outcome: Outcome) -> int:
    """Attempts on the primary that failed (a status), not skips (circuit open, unhealthy)."""
    notes = outcome.skipped_or_failed
    return sum(n.startswith(f"{PRIMARY}:") and n.rpartition(":")[2].isdigit() for n in notes)


async def back_in_rotation(
    routers: list[Router], healed_at: float, limit_s: float
) -> list[float | None]:
    """Seconds after the heal at which each router had the primary in rotation again (polled
    every 20 ms; None past `limit_s`)."""
    back: list[float | None] = [None] * len(routers)
    while time.monotonic() - healed_at < limit_s and None in back:
        for i, router in enumerate(routers):
            if back[i] is None and primary_in_rotation(router):
                back[i] = round(time.monotonic() - healed_at, 2)
        await asyncio.sleep(0.02)
    return back


async def run_scenario(
    scenario: Scenario,
    count: int,
    primary: Simulator,
    secondary: Simulator,
    args: argparse.Namespace,
) -> dict[str, Any]:
    text = CONFIG.format(primary=primary.port, secondary=secondary.port)
    if args.defaults:  # the breaker and ejection as a config that sets neither has them
        drop = ("breaker:", "outlier:")
        text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(drop))
    config = parse_config(text, env={})
    routers = [Router(config) for _ in range(count)]
    await asyncio.gather(*(router.start() for router in routers))
    phase_s = tuple(args.phase_s)
    load = RoundRobinLoad(routers, args.concurrency, args.pause_ms / 1000)
    try:
        await asyncio.sleep(phase_s[0])
        load.phase, fault_at = "during", time.monotonic()
        await break_primary(scenario, primary)
        await asyncio.sleep(phase_s[1])
        load.phase = "after"
        await heal_primary(scenario, primary)
        healed_at = time.monotonic()
        back = await back_in_rotation(routers, healed_at, phase_s[2])
    finally:
        await load.stop()
        await asyncio.gather(*(router.aclose() for router in routers))
    during = [(i, o) for i, o in load.outcomes if o.phase == "during"]
    failing = [(i, o) for i, o in during if failed_attempts(o)]
    per_router = [sum(failed_attempts(o) for j, o in during if j == i) for i in range(count)]
    last = max((o.started for _, o in failing), default=None)
    since_fault = fault_at - load.t0
    first_skip = [
        min((o.started for j, o in during if j == i and skipped_primary(o)), default=None)
        for i in range(count)
    ]
    stopped = [None if t is None else round(t - since_fault, 2) for t in first_skip]
    seconds = phase_s[1]
    return {
        "routers": count,
        "scenario": scenario.name,
        "requests_per_s_per_router": round(len(during) / seconds / count, 1),
        "sent": len(during),
        "failed": sum(not o.ok for _, o in during),
        "failed_attempts_on_primary": sum(per_router),
        "failed_attempts_per_router": per_router,
        # When each router first passed over the primary: every router had by the last one.
        "stopped_trying_after_fault_s": stopped,
        "all_stopped_after_fault_s": _latest(stopped),
        # Failed attempts go on after that: half-open probes, until the heal.
        "last_failed_attempt_after_fault_s": None if last is None else round(last - since_fault, 2),
        "back_in_rotation_after_heal_s": back,
        "all_back_after_heal_s": _latest(back),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    primary, secondary = Simulator(free_port()), Simulator(free_port())
    primary.start()
    secondary.start()
    rows = []
    try:
        await asyncio.gather(primary.ready(), secondary.ready())
        for scenario in (s for s in SCENARIOS if s.name in args.scenarios):
            for count in args.routers:
                print(f"{scenario.name}, {count} router(s)", flush=True)
                row = await run_scenario(scenario, count, primary, secondary, args)
                print(f"  {row}", flush=True)
                rows.append(row)
    finally:
        primary.stop()
        secondary.stop()
    return rows


def _latest(times: list[float | None]) -> float | None:
    """The last of `times`, or None when one of them never came."""
    known = [t for t in times if t is not None]
    return max(known) if len(known) == len(times) and known else None


def _listed(values: list[int]) -> str:
    return ", ".join(str(v) for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--phase-s", type=float, nargs=3, default=[2.0, 5.0, 5.0],
                        help="before, during (the fault), after (the heal's limit)")  # fmt: skip
    parser.add_argument("--scenarios", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--pause-ms", type=float, default=0.0,
                        help="each client's wait between calls (0: back to back)")  # fmt: skip
    parser.add_argument("--defaults", action="store_true",
                        help="breaker and ejection at their defaults")  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "failover_routers.json")
    args = parser.parse_args()
    report = Report("failover_routers", parameters=vars(args) | {"out": str(args.out)})
    rows = asyncio.run(run(args))
    table = markdown_table(
        ["fault", "routers", "requests/s per router", "sent", "failed",
         "failed attempts on the primary (per router)",
         "every router passed over it after", "all routers back after the heal"],
        [[r["scenario"], r["routers"], r["requests_per_s_per_router"], r["sent"], r["failed"],
          f"{r['failed_attempts_on_primary']} ({_listed(r['failed_attempts_per_router'])})",
          f"{r['all_stopped_after_fault_s']} s", f"{r['all_back_after_heal_s']} s"]
         for r in rows],
        align="lrrrrlrr",
    )  # fmt: skip
    print(table)
    report.write({"rows": rows, "markdown": table}, path=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
