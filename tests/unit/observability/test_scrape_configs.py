"""cluster/prometheus/: the scrape configs are valid, and point at the port every Ray node of
the shipped RayService serves its metrics on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.support import require_binary

CLUSTER = Path(__file__).resolve().parents[3] / "cluster"


def test_the_prometheus_config_is_valid_for_promtool() -> None:
    promtool = require_binary("promtool", "/usr/bin/promtool")
    checked = subprocess.run(
        [promtool, "check", "config", str(CLUSTER / "prometheus" / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_ray_node_exports_metrics_on_the_port_the_pod_monitor_scrapes() -> None:
    monitor = yaml.safe_load((CLUSTER / "prometheus" / "podmonitor.yaml").read_text())
    # Ray's agent on `metrics` (HAProxy's own series on `haproxy-metrics` are checked in
    # tests/unit/test_cluster_manifests.py).
    (endpoint,) = [e for e in monitor["spec"]["podMetricsEndpoints"] if e["port"] == "metrics"]
    service = yaml.safe_load((CLUSTER / "rayservice.yaml").read_text())
    cluster = service["spec"]["rayClusterConfig"]
    groups: list[dict[str, Any]] = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        export_port = int(group["rayStartParams"]["metrics-export-port"])
        assert ports[endpoint["port"]] == export_port
