"""The embedder's memory on a CPU: ONNX Runtime against eager PyTorch, each in a fresh process.

For each runtime a child process loads `Embedder` (the ONNX graph from the cache folder when
it is there: `--fresh` exports it first, as a replica's first start on a machine does) and
reports its resident memory (RSS) after loading, after 200 one-text lookups, and after each
of three batches of 64 long texts (MiniLM's 256 tokens: what a bulk corpus or long answers
bring). A replica's memory is what the cache deployment costs per replica.

    .venv/bin/python -m benchmarks.embedder_memory [--fresh] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.report import RESULTS, Report

RUNTIMES = ("onnxruntime", "torch")


def child(runtime: str) -> dict[str, Any]:
    """Run in the child: the RSS (MiB) at each step."""
    import psutil

    from gateway.cache.embedder import Embedder

    process = psutil.Process()

    def rss() -> int:
        return int(process.memory_info().rss // 2**20)

    steps = {"imported": rss()}
    embedder = Embedder(device="cpu", onnx=runtime == "onnxruntime")
    assert embedder.runtime == runtime, embedder.runtime
    steps["loaded"] = rss()
    for _ in range(200):
        embedder.embed(["How do I reset the VPN password on my company laptop?"])
    steps["after_200_lookups"] = rss()
    for n in range(3):
        embedder.embed(["word " * 300] * 64)
        steps[f"after_long_batch_{n + 1}"] = rss()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="export the graph first")
    parser.add_argument("--out", type=Path, default=RESULTS / "embedder_memory.json")
    parser.add_argument("--child", choices=RUNTIMES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    report = Report("embedder_memory", parameters={"fresh": args.fresh})
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {"RAYGATE_CACHE_DIR": cache} if args.fresh else {}
        for runtime in RUNTIMES:
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.embedder_memory", "--child", runtime],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **env},
            )
            results[runtime] = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"  {runtime:12} RSS MiB {results[runtime]}", flush=True)
    report.write({"rss_mib": results}, path=args.out)


if __name__ == "__main__":
    main()
