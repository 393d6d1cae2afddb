"""What every benchmark report says, said one way: the percentiles (one definition, so that
a p99 in one report means what it means in another), the machine, the commit, the time, the
load average at the start and the end of the run, and the JSON under `benchmarks/results/`;
and one progress bar for the loops that take minutes.

    report = Report("overhead", parameters={"requests": 400})
    for level in progress(levels, "levels"):
        ...measure...
    report.write({"rows": rows})      # benchmarks/results/overhead.json

Benchmarks run from the repository root as modules: `python -m benchmarks.overhead`.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import numpy as np
from tqdm import tqdm

from gateway.progress import draws, tracked

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The `q`-th percentile (0-100) of `values`, interpolated linearly between the two
    nearest ranks (numpy's default, Hyndman & Fan type 7); None when there are none."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def latency_summary(values_ms: Sequence[float], *, digits: int = 2) -> dict[str, Any]:
    """n, p50, p90, p99, mean and max of latencies in milliseconds (rounded)."""

    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, digits)

    return {
        "n": len(values_ms),
        "p50_ms": rounded(percentile(values_ms, 50)),
        "p90_ms": rounded(percentile(values_ms, 90)),
        "p99_ms": rounded(percentile(values_ms, 99)),
        "mean_ms": rounded(float(np.mean(values_ms)) if values_ms else None),
        "max_ms": rounded(max(values_ms) if values_ms else None),
    }


def machine() -> dict[str, Any]:
    """What the run was on: CPUs, memory, Python, the platform, and a GPU if there is one."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    gpu = _gpu()
    if gpu:
        info["gpu"] = gpu
    return info


def commit() -> str | None:
    """The checked-out commit (short), with `-dirty` when the code has uncommitted changes
    (results written by earlier benchmarks of the same run do not count)."""
    head = _git("rev-parse", "--short", "HEAD")
    if head is None:
        return None
    dirty = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results")
    return f"{head}-dirty" if dirty else head


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine skews a run)."""
    return [round(x, 2) for x in os.getloadavg()]


class Report:
    """One benchmark run: started at construction, written once with its results."""

    def __init__(self, name: str, *, parameters: dict[str, Any] | None = None) -> None:
        self.name = name
        self.parameters = parameters or {}
        self._started = datetime.now(UTC)
        self._load_at_start = load_average()

    def write(self, results: dict[str, Any], *, path: Path | None = None) -> Path:
        """Write the report (metadata first, then `results`) and return its path."""
        path = path or RESULTS / f"{self.name}.json"
        body = {
            "benchmark": self.name,
            "timestamp": self._started.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "commit": commit(),
            "machine": machine(),
            "load_average": {"at_start": self._load_at_start, "at_end": load_average()},
            "parameters": self.parameters,
            **results,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(body, indent=2, default=str) + "\n")
        print(f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        return path


def progress(
    items: Iterable[T], description: str, *, total: int | None = None, unit: str = "it"
) -> Iterator[T]:
    """`items`, with a bar on stderr when it is a terminal (or RAYGATE_PROGRESS=1); what the
    benchmark prints meanwhile goes above the bar. The bar goes once the loop ends."""
    if not draws():
        yield from items
        return
    above = _AboveTheBar(sys.stdout)
    try:
        with contextlib.redirect_stdout(above):
            yield from tracked(items, description, total=total, unit=unit, show=True, leave=False)
    finally:
        above.close()


class _AboveTheBar(io.TextIOBase):
    """Standard output while a bar is drawn on stderr: each whole line is written above it."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._line = ""

    def write(self, text: str) -> int:
        lines, newline, self._line = (self._line + text).rpartition("\n")
        if newline:
            self._above(lines + newline)
        return len(text)

    def close(self) -> None:
        if self._line:
            self._above(self._line)
            self._line = ""
        super().close()

    def _above(self, text: str) -> None:
        with tqdm.external_write_mode(file=sys.stderr):
            self._out.write(text)
            self._out.flush()


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A Markdown table; `align` has one character per column, `l` or `r` (default `l`)."""
    marks = ["---:" if (align[i : i + 1] or "l") == "r" else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=ROOT, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _gpu() -> str | None:
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
