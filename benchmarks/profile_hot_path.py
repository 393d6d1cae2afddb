"""Where the miss path's time goes: py-spy on every Serve process under load.

Starts the simulator and raygate (cache off, Ray Serve's throughput-optimized settings, as
`raygate up` ships them), puts `--concurrency` non-streamed chat requests on the miss path for
`--seconds`, and meanwhile samples the proxy and ingress replicas with py-spy (the router runs
in the ingress: `serve.colocate_router`, the default). For each process it reports the
functions with the largest share of samples, inclusive (anywhere on the stack) and self (the
frame running), the share of raygate's own functions, and writes a flame graph (SVG) for
each. py-spy samples the thread holding the GIL (`--gil`), so the shares are of the Python
CPU time each process spends. Writes
`benchmarks/results/profile_hot_path.json` and `profile_hot_path_<process>.svg`.

Serve's front comes from the environment. Behind HAProxy, as `raygate up` runs it, export its
settings (deployments/local.ray_env: `RAY_SERVE_ENABLE_HA_PROXY=1`,
`RAY_SERVE_HAPROXY_BINARY_PATH=.venv/bin/raygate-haproxy`, `RAYGATE_PROXY_SECRET=...`): the
ingress replicas then take the HTTP themselves and Serve's proxy actor sits idle.

    .venv/bin/python -m benchmarks.profile_hot_path [--seconds 20] [--concurrency 8]
"""

import argparse
import asyncio
import os
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1")  # before Ray starts

import psutil
from ray import serve

from benchmarks.overhead import KEY, _deploy, _free_port, _load, _wait
from benchmarks.report import RESULTS, ROOT, Report

PROCESSES = {
    "proxy": "ProxyActor",
    "ingress": "ServeReplica:raygate:Ingress",
}
"""Each sampled process, by what its title holds."""

PY_SPY = Path(sys.executable).with_name("py-spy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=20, help="sampling time under load")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25, help="functions listed per process")
    args = parser.parse_args()
    report = Report("profile_hot_path", parameters=vars(args))
    sim_port, serve_port = _free_port(), _free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    simulator = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "simulate", "--port", str(sim_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"{sim_url}/healthz")
        _deploy(sim_url, serve_port, [1])
        _wait(f"http://127.0.0.1:{serve_port}/readyz")
        pids = {name: _pid(title) for name, title in PROCESSES.items()}
        url = f"http://127.0.0.1:{serve_port}/v1/chat/completions"
        headers = {"authorization": f"Bearer {KEY}"}
        asyncio.run(_load(url, args.concurrency, 200, headers))  # warm
        samplers = {name: _sample(pid, name, args) for name, pid in pids.items()}
        load = asyncio.run(_timed_load(url, args.concurrency, args.seconds, headers))
        for sampler in samplers.values():
            sampler.wait(timeout=args.seconds + 60)
    finally:
        simulator.terminate()
        serve.shutdown()
    processes = {name: _summary(name, args.top) for name in PROCESSES}
    for name, summary in processes.items():
        print(f"\n{name}: {summary['samples']} samples, raygate's code on "
              f"{summary['raygate_any_frame'] or 0:.1%} of them (the upstream call "
              f"{summary['upstream_call'] or 0:.1%})")  # fmt: skip
        for kind in ("self", "raygate_inclusive"):
            print(f" {kind}:")
            for row in summary[kind][:12]:
                print(f"  {row['share']:6.1%}  {row['function']}")
    report.write({"load": load, "processes": processes})
    return 0


def _pid(title: str) -> int:
    """The process whose title or command line holds `title`."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for process in psutil.process_iter(["cmdline"]):
            if title in " ".join(process.info["cmdline"] or []):
                return int(process.pid)
        time.sleep(0.5)
    raise RuntimeError(f"no process titled {title!r}")


def _sample(pid: int, name: str, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for the load's duration, raw stacks (for the summary) and an
    SVG (for people); two recorders would sample twice, so the SVG is drawn from the raw."""
    raw = RESULTS / f"profile_hot_path_{name}.txt"
    command = [str(PY_SPY), "record", "--pid", str(pid), "--duration", str(args.seconds)]
    command += ["--rate", str(args.rate), "--format", "raw", "--output", str(raw), "--nonblocking"]
    command += ["--gil"]  # only the thread running Python: where the CPU time goes
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _timed_load(
    url: str, concurrency: int, seconds: int, headers: dict[str, str]
) -> dict[str, Any]:
    """Load until `seconds` have passed (the samplers' window), in rounds of `_load`."""
    deadline = time.monotonic() + seconds
    rounds = []
    while time.monotonic() < deadline:
        rounds.append(await _load(url, concurrency, concurrency * 25, headers))
    done = sum(r["requests"] - r["errors"] for r in rounds)
    return {
        "concurrency": concurrency,
        "requests": done,
        "errors": sum(r["errors"] for r in rounds),
        "p50_ms_per_round": [r["p50_ms"] for r in rounds],
    }


def _summary(name: str, top: int) -> dict[str, Any]:
    """The top functions by inclusive and self share, from py-spy's raw (collapsed) stacks;
    the raw file gives way to a flame graph SVG."""
    raw = RESULTS / f"profile_hot_path_{name}.txt"
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    stacks: list[tuple[list[str], int]] = []
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_function(frame) for frame in stack.split(";")[1:]]  # [0] is the thread
        n = int(count)
        total += n
        stacks.append((frames, n))
        for function in set(frames):
            inclusive[function] += n
        if frames:
            own[frames[-1]] += n
    _flame_graph(stacks, RESULTS / f"profile_hot_path_{name}.svg", title=name)
    raw.unlink()

    def rows(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"function": f, "share": round(n / total, 4)} for f, n in counter.most_common(top)]

    ours = Counter({f: n for f, n in inclusive.items() if _raygate(f)})
    # One function's inclusive share misses raygate's work on other stacks: the policy check
    # and the audit commit run in worker threads, background tasks on the loop's own stack.
    anywhere = sum(n for frames, n in stacks if any(map(_raygate, frames)))
    upstream = sum(n for frames, n in stacks if any(map(_upstream_call, frames)))
    return {
        "samples": total,
        "inclusive": rows(inclusive),
        "self": rows(own),
        "raygate_inclusive": rows(ours),
        "raygate_any_frame": round(anywhere / total, 4) if total else None,
        "upstream_call": round(upstream / total, 4) if total else None,
    }


def _upstream_call(function: str) -> bool:
    """The provider call (httpx to the upstream), which a bare forwarder makes too."""
    return function.startswith("Provider.post ")


def _raygate(function: str) -> bool:
    """A frame of raygate's own code (not Ray Serve's, the libraries' or the runtime's)."""
    return any(f"({part}/" in function for part in ("gateway", "deployments", "local_models"))


def _function(frame: str) -> str:
    """`name (path/to/module.py:123)` as `name (module path from site-packages or repo)`."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    stdlib = f"python{sys.version_info[0]}.{sys.version_info[1]}/"
    for marker in ("site-packages/", f"{ROOT}/", stdlib):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{name} ({path})"


def _flame_graph(stacks: list[tuple[list[str], int]], out: Path, *, title: str) -> None:
    """A plain icicle SVG of the stacks: one rectangle per frame, width by samples."""
    tree: dict[str, Any] = {"n": 0, "children": {}}
    for frames, n in stacks:
        node = tree
        node["n"] += n
        for frame in frames:
            node = node["children"].setdefault(frame, {"n": 0, "children": {}})
            node["n"] += n
    width, row = 1600.0, 16
    rects: list[str] = []
    depth = 0

    def draw(node: dict[str, Any], x: float, level: int) -> None:
        nonlocal depth
        depth = max(depth, level)
        for frame, child in sorted(node["children"].items(), key=lambda kv: -kv[1]["n"]):
            w = width * child["n"] / max(tree["n"], 1)
            if w >= 1:
                label = frame if w > 7 * len(frame) else frame[: int(w / 7)]
                hue = 20 + zlib.crc32(frame.split(" (")[-1].encode()) % 40
                rects.append(
                    f"<g><title>{_escape(frame)} ({child['n']} samples)</title>"
                    f'<rect x="{x:.1f}" y="{level * row + 24}" width="{w:.1f}" height="{row - 1}"'
                    f' fill="hsl({hue},80%,60%)"/><text x="{x + 2:.1f}" y="{level * row + 36}"'
                    f' font-size="11">{_escape(label)}</text></g>'
                )
                draw(child, x, level + 1)
            x += w

    draw(tree, 0.0, 0)
    height = (depth + 2) * row + 24
    out.write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height}"'
        f' font-family="monospace"><text x="4" y="16" font-size="14">raygate {title}: '
        f"py-spy, {tree['n']} samples (hover for names)</text>{''.join(rects)}</svg>\n"
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


if __name__ == "__main__":
    sys.exit(main())
