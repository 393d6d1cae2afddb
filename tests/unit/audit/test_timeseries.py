"""The trail per time bucket (the console's overview), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from gateway.audit import AuditStore
from gateway.audit.query import AuditFilter
from gateway.audit.timeseries import timeseries
from tests.unit.audit.factory import T0, make_record

LATENCIES = [3.0, 4.5, 12.0, 60.0, 75.0, 250.0, 900.0, 1800.0, 7.5, 33.0]


@pytest.fixture
def stored(store: AuditStore) -> None:
    """Ten model requests in T0's first minute (one a hit, one a 429, one a bypass), two in the
    third minute, an admin action and a pre-cached follow-up (neither a client's request)."""
    records = [
        make_record(n, ts=T0 + timedelta(seconds=5 * n), latency_ms=ms)
        for n, ms in enumerate(LATENCIES)
    ]
    records[1] = records[1].model_copy(update={"cache_phase": "exact", "cost_avoided_usd": 0.25})
    records[2] = records[2].model_copy(update={"status": 429, "tokens_in": None})
    records[3] = records[3].model_copy(update={"cache_phase": "bypass"})
    records += [
        make_record(20, ts=T0 + timedelta(minutes=2, seconds=1), latency_ms=None),
        make_record(21, ts=T0 + timedelta(minutes=2, seconds=2), model_requested="sim-x"),
        make_record(22, ts=T0 + timedelta(seconds=30), route="/admin/keys", admin_action="k"),
        make_record(23, ts=T0 + timedelta(seconds=31), admin_action="cache.precache"),
    ]
    store.append(records)


def test_requests_are_counted_per_bucket_with_empty_buckets_in_between(
    store: AuditStore, stored: None
) -> None:
    window = AuditFilter(since=T0, until=T0 + timedelta(minutes=4))
    series = timeseries(store, window, "1m", T0)
    assert [p.start for p in series.points] == [T0 + timedelta(minutes=m) for m in range(4)]
    assert [p.requests for p in series.points] == [10, 0, 2, 0]
    first = series.points[0]
    assert first.errors == 1
    assert first.cache_hits == 1 and first.cache_lookups == 9  # the bypass is no lookup
    assert first.cost_avoided_usd == pytest.approx(0.25)
    assert first.cost_usd == pytest.approx(sum(0.001 * (n + 1) for n in range(10)))
    assert first.tokens_in == sum(10 + n for n in range(10) if n != 2)
    assert series.points[1].latency_p50_ms is None and series.points[1].requests == 0


def test_latency_percentiles_follow_the_recorded_latencies(store: AuditStore, stored: None) -> None:
    window = AuditFilter(since=T0, until=T0 + timedelta(minutes=1))
    (point,) = timeseries(store, window, "1m", T0).points
    assert point.latency_mean_ms == pytest.approx(np.mean(LATENCIES))
    # One latency per band here, so the histogram's answer is numpy's.
    assert point.latency_p50_ms == pytest.approx(np.percentile(LATENCIES, 50))
    assert point.latency_p95_ms == pytest.approx(np.percentile(LATENCIES, 95))
    third = timeseries(
        store, AuditFilter(since=T0 + timedelta(minutes=2)), "1m", T0 + timedelta(minutes=3)
    )
    assert third.points[0].latency_p50_ms == 12.5  # one of its two requests was timed


def test_percentiles_of_crowded_bands_stay_inside_them(store: AuditStore) -> None:
    latencies = [20.0 + n / 10 for n in range(50)] + [100.0 + n for n in range(50)]
    store.append(
        [make_record(n, ts=T0, latency_ms=ms, principal=None) for n, ms in enumerate(latencies)]
    )
    (point,) = timeseries(
        store, AuditFilter(since=T0, until=T0 + timedelta(minutes=1)), "1m", T0
    ).points
    assert point.latency_p50_ms == pytest.approx(np.percentile(latencies, 50), rel=0.05)
    assert point.latency_p95_ms == pytest.approx(np.percentile(latencies, 95), rel=0.05)


def test_narrow_buckets_and_filters_apply(store: AuditStore, stored: None) -> None:
    window = {"since": T0, "until": T0 + timedelta(seconds=30)}
    series = timeseries(store, AuditFilter(**window), "10s", T0)
    assert [p.requests for p in series.points] == [2, 2, 2]
    only = timeseries(store, AuditFilter(**window, user="user1"), "10s", T0)
    assert [p.requests for p in only.points] == [1, 0, 1]


def test_the_window_defaults_to_sixty_buckets_before_now(store: AuditStore, stored: None) -> None:
    series = timeseries(store, AuditFilter(), "10s", T0 + timedelta(minutes=10))
    assert len(series.points) == 60
    assert series.points[0].start == T0
    assert sum(p.requests for p in series.points) == 12


def test_a_window_of_too_many_buckets_is_refused(store: AuditStore) -> None:
    with pytest.raises(ValueError, match=r"^bucket: "):
        timeseries(store, AuditFilter(since=T0 - timedelta(days=30)), "10s", T0)
