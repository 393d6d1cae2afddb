"""What recording a request's metrics costs on the request path: `RequestMetrics.record`
(the ~10 instruments one chat request touches) inside a Ray actor with Ray Serve's metric
classes, as an ingress replica runs it, beside the in-process `Recorder` and beside nothing.

    python -m benchmarks.metrics_cost [--requests 20000]

Side by side in one run, in one actor, rounds interleaved. Writes
benchmarks/results/metrics_cost.json.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import ray

from benchmarks.report import Report, latency_summary, progress


@ray.remote(num_cpus=0.5)
class _Replica:
    """Stands in for an ingress replica: the same exchange recorded through each sink."""

    def __init__(self) -> None:
        from gateway.api.exchange import Exchange
        from gateway.api.metrics import RequestMetrics
        from gateway.config import parse_config
        from gateway.identity.access import Grant
        from gateway.observability.metrics import Instrument, MetricSpec, Recorder
        from gateway.routing.failover import Route

        config = parse_config(_CONFIG)
        self._exchange = Exchange(request_id="req_1", path="/v1/chat/completions",
                                  client_address="127.0.0.1")  # fmt: skip
        ex = self._exchange
        ex.template, ex.model, ex.status = "/v1/chat/completions", "sim-small", 200
        ex.grant = Grant(("*",), None, ())
        ex.route = Route(target="sim/sim-small", upstream_ms=5.0)
        ex.tokens_in, ex.tokens_out, ex.cost_usd, ex.cache_phase = 12, 40, 0.0001, "miss"

        def ray_metric(spec: MetricSpec) -> Instrument:
            # ray.util.metrics: what ray.serve.metrics wraps (the replica tags aside).
            from ray.util import metrics

            tags: Any = spec.tags
            if spec.kind == "counter":
                return metrics.Counter(spec.name, tag_keys=tags)  # type: ignore[return-value]
            if spec.kind == "gauge":
                return metrics.Gauge(spec.name, tag_keys=tags)  # type: ignore[return-value]
            buckets: Any = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
            histogram = metrics.Histogram(spec.name, boundaries=buckets, tag_keys=tags)
            return histogram  # type: ignore[return-value]

        self._sinks = {
            "ray": RequestMetrics(config, ray_metric),
            "in_process": RequestMetrics(config, Recorder()),
        }

    def time_us(self, sink: str, n: int) -> list[float]:
        """Per-call microseconds of `n` records through `sink` ("none": the loop alone)."""
        out = []
        record = self._sinks[sink].record if sink != "none" else None
        for _ in range(n):
            start = time.perf_counter()
            if record is not None:
                record(self._exchange, 20.0)
            out.append((time.perf_counter() - start) * 1e6)
        return out


_CONFIG = """
providers:
  sim: {preset: simulator, base_url: "http://127.0.0.1:1/v1"}
models:
  sim-small: {targets: [sim/sim-small]}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    report = Report("metrics_cost", parameters=vars(args))
    ray.init(address="local", num_cpus=1, include_dashboard=False, logging_level="ERROR")
    replica = _Replica.remote()  # type: ignore[attr-defined]
    samples: dict[str, list[float]] = {"none": [], "in_process": [], "ray": []}
    for _ in progress(range(args.rounds), "rounds"):
        for sink in samples:
            samples[sink] += ray.get(replica.time_us.remote(sink, args.requests // args.rounds))
    ray.shutdown()
    rows = {}
    for sink, values in samples.items():
        summary = latency_summary(values, digits=2)
        rows[sink] = {k.replace("_ms", "_us"): v for k, v in summary.items()}
    print({sink: (row["p50_us"], row["p99_us"]) for sink, row in rows.items()})
    note = "one chat request's metrics, in a Ray actor (ray.util.metrics, which Serve's wrap)"
    report.write({"per_request_us": rows, "note": note})


if __name__ == "__main__":
    main()
