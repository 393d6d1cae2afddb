"""Autoscaling seen, not assumed: load drives the Ingress and Cache deployments up from their
minimum, and after it stops Serve brings them back down; replica counts read from Serve."""

from __future__ import annotations

import pytest

from tests.cluster.stack import Deployed, minimum
from tests.support.load import Load

pytestmark = pytest.mark.slow


def test_load_scales_ingress_and_cache_up_and_idle_scales_them_down(deployed: Deployed) -> None:
    cluster = deployed.cluster
    floor = {d: minimum(deployed.config, d) for d in ("Ingress", "Cache")}
    cluster.wait_until(
        lambda s: all(s.replicas(d) == n for d, n in floor.items()), 120, "the minimum"
    )
    with Load(deployed.base_url, deployed.api_key, clients=16, streams=False) as load:
        load.wait_for_ok(50)
        up = cluster.wait_until(
            lambda s: all(s.running(d) > n for d, n in floor.items()), 180, "a scale-up"
        )
    assert load.report().failed == 0, load.report().as_dict()
    down = cluster.wait_until(
        lambda s: all(s.replicas(d) == n for d, n in floor.items()), 180, "a scale-down"
    )
    print({d: (floor[d], up.running(d), down.running(d)) for d in floor})
