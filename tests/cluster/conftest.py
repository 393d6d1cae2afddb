"""One raygate cluster for the tests of this package (tests/cluster/stack.py): the shipped
Serve config and the shipped raygate config with the replica sizes and autoscaling timings
shortened.

Package scope, not session: the cluster (three raylets, their replicas, HAProxy, PostgreSQL,
Redis) is stopped after this package's last test. Kept for the whole session it loaded the
two cores through every later test, and a slow start elsewhere (`tests/integration`'s own
Ray head took over three minutes to start its replicas) failed on its deadline."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.stack import Deployed, deployed_stack


@pytest.fixture(scope="package")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with deployed_stack(tmp_path_factory.mktemp("cluster")) as stack:
        yield stack
