"""One raygate cluster per test session (tests/cluster/stack.py): the shipped Serve config
and the shipped raygate config with the replica sizes and autoscaling timings shortened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.stack import Deployed, deployed_stack


@pytest.fixture(scope="session")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with deployed_stack(tmp_path_factory.mktemp("cluster")) as stack:
        yield stack
