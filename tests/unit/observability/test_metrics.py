"""The metric catalogue and the in-process `Recorder`: names as Prometheus will store them,
and the checks Ray's agent makes (every tag key given, counters only going up)."""

from __future__ import annotations

import pytest

from gateway.observability.metrics import CATALOGUE, SPECS, Recorder, instruments


def test_names_are_unique_prefixed_and_exported_as_prometheus_stores_them() -> None:
    assert len(SPECS) == len(CATALOGUE)
    assert all(spec.name.startswith("raygate_") for spec in CATALOGUE)
    assert SPECS["raygate_requests"].exported == "ray_raygate_requests_total"
    assert SPECS["raygate_ttft_ms"].exported == "ray_raygate_ttft_ms"
    assert SPECS["raygate_audit_queue_depth"].exported == "ray_raygate_audit_queue_depth"


def test_no_metric_is_labelled_by_who_or_what() -> None:
    unbounded = {"user", "user_id", "email", "key_id", "prompt", "request_id", "department"}
    assert not [spec.name for spec in CATALOGUE if unbounded & set(spec.tags)]


def test_the_recorder_refuses_what_ray_refuses() -> None:
    recorder = Recorder()
    metrics = instruments(recorder, ["raygate_cache_lookups", "raygate_audit_queue_depth"])
    lookups = metrics["raygate_cache_lookups"]
    with pytest.raises(ValueError, match="tags"):
        lookups.inc(tags={"phase": "exact", "user": "alice"})
    with pytest.raises(ValueError, match="tags"):
        lookups.inc()
    with pytest.raises(ValueError, match="only goes up"):
        lookups.inc(0, tags={"phase": "exact"})
    lookups.inc(tags={"phase": "exact"})
    lookups.inc(2, tags={"phase": "miss"})
    metrics["raygate_audit_queue_depth"].set(4)
    metrics["raygate_audit_queue_depth"].set(1)
    assert recorder.value("raygate_cache_lookups") == 3
    assert recorder.value("raygate_cache_lookups", phase="miss") == 2
    assert recorder.value("raygate_audit_queue_depth") == 1
