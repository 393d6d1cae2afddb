"""Faults under load on the cluster, each counted: what tests/cluster/test_faults.py asserts on
and benchmarks/cluster.py tabulates.

Each runs `clients` load clients (plain and streamed chat completions, tests/support/load.py),
waits for 20 successes, injects the fault, waits until Serve has recovered (the time it took
is `recovered_s`), waits for 20 more successes, and stops the load.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.cluster.stack import Deployed, deployments, minimum
from tests.servers.ray_cluster import ServeStatus
from tests.support.load import Load, Report


@dataclass(frozen=True)
class FaultRun:
    fault: str
    report: Report
    recovered_s: float

    def as_dict(self) -> dict[str, Any]:
        return {"fault": self.fault, **self.report.as_dict(), "recovered_s": self.recovered_s}


def under_load(
    deployed: Deployed,
    fault: str,
    inject: Callable[[], Callable[[ServeStatus], bool]],
    *,
    clients: int = 4,
    timeout_s: float = 240,
    model: str = "sim-small",
    request_timeout_s: float = 60.0,
) -> FaultRun:
    """Run `inject` under load on `model`; it returns the test of a `serve status` that has
    recovered."""
    with Load(deployed.base_url, deployed.api_key, clients=clients, model=model,
              timeout_s=request_timeout_s) as load:  # fmt: skip
        load.wait_for_ok(20, timeout_s=max(120.0, request_timeout_s))
        started = time.monotonic()
        recovered = inject()
        deployed.cluster.wait_until(recovered, timeout_s, f"recovery from {fault}")
        recovered_s = time.monotonic() - started
        load.wait_for_ok(load.ok + 20)
    return FaultRun(fault, load.report(), round(recovered_s, 1))


def kill_replica(deployed: Deployed, deployment: str, *, clients: int = 4) -> FaultRun:
    """`ray.kill` one replica of `deployment`; recovered once a replacement runs."""
    cluster, floor = deployed.cluster, minimum(deployed.config, deployment)

    def inject() -> Callable[[ServeStatus], bool]:
        killed = cluster.kill_replica(deployment)
        return lambda status: (
            status.running(deployment) >= floor and killed not in cluster.replicas(deployment)
        )

    return under_load(deployed, f"kill a {deployment} replica", inject, clients=clients)


def kill_local_model(deployed: Deployed, model: str, *, clients: int = 4) -> FaultRun:
    """`ray.kill` the replica of local model `model` (woken from zero by the load itself)
    while it answers; recovered once Serve has started a replacement. A call in flight on the
    dead replica waits for the replacement (a vLLM engine starting: most of a minute here)."""
    cluster, deployment = deployed.cluster, f"LocalModel:{model}"

    def inject() -> Callable[[ServeStatus], bool]:
        killed = cluster.kill_replica(deployment)
        return lambda status: (
            status.running(deployment) >= 1 and killed not in cluster.replicas(deployment)
        )

    return under_load(deployed, f"kill the {model} replica", inject, clients=clients,
                      model=model, request_timeout_s=420, timeout_s=420)  # fmt: skip


def redeploy(
    deployed: Deployed,
    config: dict[str, Any],
    rolled_out: Callable[[ServeStatus], bool],
    *,
    clients: int = 4,
) -> FaultRun:
    """`raygate deploy` of `config`; recovered once `rolled_out` and the app runs."""

    def inject() -> Callable[[ServeStatus], bool]:
        deployed.redeploy(config)
        return lambda status: status.app.get("status") == "RUNNING" and rolled_out(status)

    # Every replica rolls, a cache replica loading MiniLM each: 126-175 s on two busy cores.
    return under_load(
        deployed, "raygate deploy of a changed config", inject, clients=clients, timeout_s=600
    )


def kill_node(deployed: Deployed, worker: str, *, clients: int = 4) -> FaultRun:
    """SIGKILL `worker`'s raylet and all it runs; recovered once every deployment has its
    minimum of replicas running on the nodes left."""
    cluster = deployed.cluster

    def inject() -> Callable[[ServeStatus], bool]:
        cluster.kill_worker(worker)
        return lambda status: (
            status.app.get("status") == "RUNNING"
            and all(
                status.running(d) >= minimum(deployed.config, d)
                for d in deployments(deployed.config)
            )
            and worker not in {w for ws in cluster.placement().values() for w in ws}
        )

    # Every replica the node ran starts again on the nodes left: 65-84 s here.
    return under_load(deployed, f"lose node {worker}", inject, clients=clients, timeout_s=420)
