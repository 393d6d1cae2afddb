"""A short-lived Ray driver for `RayCluster`: `python -m tests.servers.ray_control GCS COMMAND`.

Prints one JSON line. Commands: `nodes` (each node's id, liveness and custom resources),
`placement` (deployment -> the worker each of its replicas runs on), `replicas NAME` (the
actor names of deployment NAME's alive replicas), `kill-replica NAME`
(`ray.kill` one running replica of deployment NAME, no restart: Serve replaces it).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import ray
from ray.util.state import list_actors

_NAMESPACE = "serve"
_BUILT_IN = ("node:", "CPU", "GPU", "memory", "object_store_memory", "accelerator")


def _worker_name(resources: dict[str, float]) -> str:
    """The custom resource a worker was started with; 'head' for the head."""
    custom = [r for r in resources if not r.startswith(_BUILT_IN)]
    return custom[0] if custom else "head"


def nodes() -> list[dict[str, Any]]:
    return [
        {"id": n["NodeID"], "alive": n["Alive"], "name": _worker_name(n["Resources"])}
        for n in ray.nodes()
    ]


def _replicas(deployment: str | None = None) -> list[dict[str, Any]]:
    """Alive replica actors, named SERVE_REPLICA::<app>#<deployment>#<id>."""
    found = []
    for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=10_000):
        name = actor.name or ""
        if not name.startswith("SERVE_REPLICA::"):
            continue
        _, of = name.split("::", 1)
        parts = of.split("#")
        if len(parts) == 3 and (deployment is None or parts[1] == deployment):
            found.append({"name": name, "deployment": parts[1], "node": actor.node_id})
    return found


def placement() -> dict[str, list[str]]:
    names = {n["id"]: n["name"] for n in nodes()}
    placed: dict[str, list[str]] = {}
    for replica in _replicas():
        placed.setdefault(replica["deployment"], []).append(names.get(replica["node"], "?"))
    return placed


def replicas(deployment: str) -> list[str]:
    return sorted(r["name"] for r in _replicas(deployment))


def kill_replica(deployment: str) -> str:
    replicas = _replicas(deployment)
    if not replicas:
        raise SystemExit(f"no alive replica of {deployment!r}")
    name = sorted(r["name"] for r in replicas)[0]
    ray.kill(ray.get_actor(name, namespace=_NAMESPACE), no_restart=True)
    return name


def main(argv: list[str]) -> None:
    address, command, *args = argv
    ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
    commands: dict[str, Callable[..., Any]] = {
        "nodes": nodes,
        "placement": placement,
        "replicas": replicas,
        "kill-replica": kill_replica,
    }
    print(json.dumps(commands[command](*args)))


if __name__ == "__main__":
    main(sys.argv[1:])
