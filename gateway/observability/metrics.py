"""The gateway's Prometheus metrics: one catalogue, and where they are recorded.

Every replica records its own series through Ray Serve's metrics API (`ray.serve.metrics`),
which tags each one with its `deployment`, `replica` and `application`; each node's Ray
metrics agent serves them at `:<metrics-export-port>/metrics` as `ray_<name>` (counters gain
`_total`). A Prometheus on the cluster scrapes every node there (`docs/observability.md`). A
`/metrics` route on the ingress would show one ingress replica per scrape and no router,
cache or local-model replica at all, so there is none.

Label values are bounded: routes are the app's route templates, models the configured aliases,
targets the configured `provider/model` pairs, groups the configured access groups; anything
else is `other`. No user id or text is ever a label.

Outside Ray (the in-process gateway of the tests, unit tests) a `Recorder` keeps the same
series in memory, with the same checks Ray makes (every tag key given, no other).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, cast

Kind = Literal["counter", "gauge", "histogram"]

# Milliseconds, from a cache hit to a long stream.
MS_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000)


@dataclass(frozen=True)
class MetricSpec:
    """One metric as the code records it (`name`) and as Prometheus stores it (`exported`)."""

    name: str
    kind: Kind
    description: str
    tags: tuple[str, ...] = ()
    deployment: str = "Ingress"  # which deployment's replicas record it

    @property
    def exported(self) -> str:
        """The series name in Prometheus: Ray's `ray_` prefix; `_total` on a counter."""
        return f"ray_{self.name}_total" if self.kind == "counter" else f"ray_{self.name}"


def _spec(name: str, kind: Kind, description: str, *tags: str, on: str = "Ingress") -> MetricSpec:
    return MetricSpec(name, kind, description, tags, on)


# fmt: off
CATALOGUE: tuple[MetricSpec, ...] = (
    # The ingress: one observation per request, when its response (or stream) ends.
    _spec("raygate_requests", "counter", "Requests answered, by route template, model alias, "
          "target that answered (none: no upstream did), HTTP status and caller group.",
          "route", "model", "target", "status", "group"),
    _spec("raygate_request_latency_ms", "histogram", "Whole request, arrival to the last byte.",
          "route", "model"),
    _spec("raygate_overhead_ms", "histogram", "Time spent in the gateway itself: the whole "
          "request less the upstream's time.", "route"),
    _spec("raygate_ttft_ms", "histogram", "Streams: arrival to the first chunk with content.",
          "model", "target"),
    _spec("raygate_tokens", "counter", "Tokens an upstream processed, in (prompt) and out "
          "(completion), as its usage counted them (cache hits: none).",
          "model", "target", "group", "direction"),
    _spec("raygate_cost_usd", "counter", "USD charged at the target's list prices.",
          "model", "target", "group"),
    _spec("raygate_cost_avoided_usd", "counter", "USD that cache hits saved, at the prices of "
          "the target that answered the original.", "model", "group"),
    _spec("raygate_cache_requests", "counter", "Requests by cache outcome: exact, normalized, "
          "semantic (hits), miss, bypass.", "model", "phase"),
    _spec("raygate_policy_decisions", "counter", "Policy rules that fired, by rule and action "
          "(redact, block, flag, ...).", "rule", "action"),
    _spec("raygate_refusals", "counter", "Requests refused before any upstream: rate_limit, "
          "budget, policy, access, auth.", "reason", "group"),
    _spec("raygate_upstream_failures", "counter", "Upstream attempts that failed and were "
          "failed over (or answered with an error), by target and status.",
          "target", "status"),
    _spec("raygate_audit_queue_depth", "gauge", "Audit records queued or being committed."),
    _spec("raygate_audit_write_lag_ms", "histogram", "Audit record queued to committed."),
    _spec("raygate_audit_write_failures", "counter", "Audit batches the database refused "
          "(retried until they go in)."),
    # The router: its breakers, per replica (the Router deployment's with
    # serve.colocate_router: false).
    _spec("raygate_breaker_state", "gauge", "Circuit breaker per target: 0 closed, "
          "1 half-open, 2 open.", "target"),
    _spec("raygate_breaker_trips", "counter", "Times a target's breaker opened.", "target"),
    # The cache deployment: its lookups and what verification and exploration did.
    _spec("raygate_cache_lookups", "counter", "Cache lookups by outcome: exact, normalized, "
          "semantic, miss.", "phase", on="Cache"),
    _spec("raygate_cache_rejected_by_verification", "counter", "Semantic candidates above the "
          "threshold that verification refused.", on="Cache"),
    _spec("raygate_cache_explorations", "counter", "Semantic candidates answered fresh to "
          "learn from (shadow or observed).", "kind", on="Cache"),
    _spec("raygate_cache_observations", "counter", "Explored candidates compared with the "
          "fresh answer, by outcome.", "kind", "outcome", on="Cache"),
    # Local models: each replica's engine.
    _spec("raygate_local_model_in_flight", "gauge", "Requests in this replica's engine "
          "(running and queued).", "model", on="LocalModel"),
    _spec("raygate_local_model_requests", "counter", "Requests the replica's engine took.",
          "model", on="LocalModel"),
)
# fmt: on

SPECS: Mapping[str, MetricSpec] = {spec.name: spec for spec in CATALOGUE}


class Instrument(Protocol):
    """The part of Ray's metric classes the gateway uses (one method per kind applies)."""

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None: ...
    def set(self, value: float, tags: dict[str, str] | None = None) -> None: ...
    def observe(self, value: float, tags: dict[str, str] | None = None) -> None: ...


class MetricFactory(Protocol):
    def __call__(self, spec: MetricSpec) -> Instrument: ...


def serve_metric(spec: MetricSpec) -> Instrument:
    """`spec` as a `ray.serve.metrics` instrument: for code inside a Serve replica."""
    from ray.serve import metrics

    tags: Any = spec.tags  # Ray annotates tag_keys as a 1-tuple
    instrument: Any
    if spec.kind == "counter":
        instrument = metrics.Counter(spec.name, description=spec.description, tag_keys=tags)
    elif spec.kind == "gauge":
        gauge = metrics.Gauge(spec.name, description=spec.description, tag_keys=tags)
        instrument = _KeptGauge(gauge)
    else:
        boundaries: Any = list(MS_BUCKETS)
        instrument = metrics.Histogram(
            spec.name, description=spec.description, boundaries=boundaries, tag_keys=tags
        )
    return cast(Instrument, instrument)


class _KeptGauge:
    """A Ray gauge whose last values are set again every half export interval.

    Ray's metrics agent forgets a gauge that was not set within two export intervals
    (`RAY_metrics_report_interval_ms`, 10 s by default): a breaker that stays open, or an
    idle audit queue, would vanish from Prometheus between changes. One daemon thread per
    process sets every kept value again."""

    _kept: ClassVar[list[_KeptGauge]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _refresher: ClassVar[threading.Thread | None] = None

    def __init__(self, gauge: Any) -> None:
        self._gauge = gauge
        self._values: dict[tuple[tuple[str, str], ...], float] = {}
        with _KeptGauge._lock:
            _KeptGauge._kept.append(self)
            if _KeptGauge._refresher is None:
                _KeptGauge._refresher = threading.Thread(
                    target=_KeptGauge._refresh_forever, name="gauge-refresh", daemon=True
                )
                _KeptGauge._refresher.start()

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._gauge.set(value, tags=tags)
        self._values[tuple(sorted((tags or {}).items()))] = value

    def refresh(self) -> None:
        for tags, value in list(self._values.items()):
            self._gauge.set(value, tags=dict(tags))

    @staticmethod
    def _refresh_forever() -> None:
        import ray

        interval_s = max(ray._config.metrics_report_interval_ms(), 1000) / 2000
        while True:
            time.sleep(interval_s)  # a refresh period, not a synchronisation
            with _KeptGauge._lock:
                kept = list(_KeptGauge._kept)
            for gauge in kept:
                gauge.refresh()


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


class Recorder:
    """Metrics kept in this process: a `MetricFactory` for code outside Ray, and what tests
    read. Counters and gauges keep their value; histograms every observation."""

    def __init__(self) -> None:
        self.values: dict[SeriesKey, float] = defaultdict(float)
        self.observations: dict[SeriesKey, list[float]] = defaultdict(list)

    def __call__(self, spec: MetricSpec) -> Instrument:
        return _Recorded(self, spec)

    def value(self, name: str, **tags: str) -> float:
        """The sum over the series of `name` whose tags include `tags`."""
        return sum(v for key, v in self.values.items() if _matches(key, name, tags))

    def observed(self, name: str, **tags: str) -> list[float]:
        """Every observation of histogram `name` in the series whose tags include `tags`."""
        return [
            o for key, obs in self.observations.items() if _matches(key, name, tags) for o in obs
        ]


def _matches(key: SeriesKey, name: str, tags: Mapping[str, str]) -> bool:
    return key[0] == name and tags.items() <= dict(key[1]).items()


class _Recorded:
    def __init__(self, recorder: Recorder, spec: MetricSpec) -> None:
        self._recorder = recorder
        self._spec = spec

    def _key(self, tags: Mapping[str, str] | None) -> SeriesKey:
        given = dict(tags or {})
        if set(given) != set(self._spec.tags):  # what Ray refuses, refused here too
            raise ValueError(f"{self._spec.name}: tags {sorted(given)} != {self._spec.tags}")
        return self._spec.name, tuple(sorted(given.items()))

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value <= 0:  # Ray refuses it too
            raise ValueError(f"{self._spec.name}: a counter only goes up")
        self._recorder.values[self._key(tags)] += value

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._recorder.values[self._key(tags)] = value

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        self._recorder.observations[self._key(tags)].append(value)


def instruments(factory: MetricFactory, names: Sequence[str]) -> dict[str, Instrument]:
    """The instruments of `names` (catalogue names), made by `factory`."""
    return {name: factory(SPECS[name]) for name in names}
