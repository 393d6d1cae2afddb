"""Faults under load on the cluster, each with exact counts (tests/cluster/faults.py): a
replica of each deployment killed with `ray.kill`, a changed config rolled out with `raygate
deploy`, and a whole worker node lost, while four clients send plain and streamed chat.

The promise: a replica's death or an upgrade costs no plain request; a lost node at most the
requests in flight on it; a stream a fault cuts ends with an error, never a clean end (an
ingress replica's death cuts the streams it was answering, mid-body: no process is left to
write an error event, and HTTP clients report the cut body as an error).
After each fault the cache still answers what it stored before from every replica, and the
audit chain verifies.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.cluster import faults
from tests.cluster.stack import Deployed, cluster_config, deployments

pytestmark = pytest.mark.slow

RAYGATE = str(Path(sys.executable).with_name("raygate"))


def _ask(
    deployed: Deployed, question: str, model: str = "sim-small", **headers: str
) -> httpx.Response:
    return httpx.post(
        f"{deployed.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {deployed.api_key}", **headers},
        json={"model": model, "messages": [{"role": "user", "content": question}]},
        timeout=60,
    )


def _still_served_and_audited(deployed: Deployed, question: str, answer: str) -> None:
    for _ in range(6):  # from whichever replicas answer now, the entry stored before
        # no-store: not kept in the ingress's near cache, so a cache replica answers each.
        again = _ask(deployed, question, **{"x-raygate-cache-control": "no-store"})
        assert again.headers["x-raygate-cache"] == "exact", again.headers
        assert again.json()["choices"][0]["message"]["content"] == answer
    verified = subprocess.run(
        [RAYGATE, "audit", "verify", "--config", str(deployed.config_path), "--json"],
        env=deployed.cluster.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr


# A replica of each deployment the shipped config builds (a Router only with
# serve.colocate_router: false), the ingress last.
@pytest.mark.parametrize("deployment", deployments(cluster_config())[::-1])
def test_a_killed_replica_costs_no_request(deployed: Deployed, deployment: str) -> None:
    question = f"What did the {deployment} replica know before it died?"
    stored = _ask(deployed, question)
    assert stored.status_code == 200, stored.text

    clients = 4
    run = faults.kill_replica(deployed, deployment, clients=clients)
    print(json.dumps(run.as_dict()))
    assert run.report.plain_failed == 0, run.as_dict()
    if deployment == "Ingress":
        # HAProxy replays a request whose replica died before answering (raygate-haproxy
        # buffers each request whole, so that it can); a stream the dead replica was already
        # answering is lost with it, cut mid-body, which every HTTP client reports as an error.
        assert run.report.failed <= clients, run.as_dict()  # at most one in flight per client
        unanswered = [f for f in run.report.failures if "without sending a response" in f]
        assert not unanswered, run.as_dict()
    assert run.report.streams_cut_cleanly == 0, run.as_dict()
    _still_served_and_audited(deployed, question, stored.json()["choices"][0]["message"]["content"])


def test_a_changed_config_rolls_out_without_a_failed_request(deployed: Deployed) -> None:
    """A new alias, a blocking policy and one more cache replica reach the running app."""
    question = "What did the cache hold before the rollout?"
    stored = _ask(deployed, question)
    assert stored.status_code == 200, stored.text
    config = copy.deepcopy(deployed.config)
    config["models"]["sim-renamed"] = {"targets": ["simulator/sim-small"]}
    config["policy"] = {"profiles": {"default": {"pii": {"EMAIL": "block"}}}}
    config["serve"]["cache"]["autoscaling"]["min_replicas"] = 3

    run = faults.redeploy(deployed, config, lambda status: status.running("Cache") >= 3)
    print(json.dumps(run.as_dict()))
    assert run.report.plain_failed == 0, run.as_dict()
    assert run.report.streams_cut_cleanly == 0, run.as_dict()

    renamed = _ask(deployed, "new alias?", model="sim-renamed")
    assert renamed.status_code == 200, renamed.text
    blocked = _ask(deployed, "mail ana@example.org about the rollout")
    assert blocked.status_code == 403, blocked.text
    assert "pii.EMAIL" in blocked.json()["error"]["message"]
    _still_served_and_audited(deployed, question, stored.json()["choices"][0]["message"]["content"])


def test_a_lost_node_fails_only_what_was_in_flight_on_it(deployed: Deployed) -> None:
    """Its replicas go with it; Serve starts them on the node left."""
    question = "What did the cache hold before the node was lost?"
    stored = _ask(deployed, question)
    assert stored.status_code == 200, stored.text
    clients = 4
    run = faults.kill_node(deployed, "worker-b", clients=clients)
    print(json.dumps(run.as_dict()))
    assert run.report.failed <= clients, run.as_dict()  # one request in flight per client
    assert run.report.streams_cut_cleanly == 0, run.as_dict()
    _still_served_and_audited(deployed, question, stored.json()["choices"][0]["message"]["content"])
    deployed.cluster.add_worker("worker-b", 2)  # as it was, for whatever runs next
    deployed.cluster.wait_for_nodes(3)
