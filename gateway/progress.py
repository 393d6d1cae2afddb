"""Progress bars of the CLI's long jobs: on stderr, and only where someone is watching.

Library code does not draw. A long job takes an optional `progress` callback (`Progress`),
called with the number of items it has just finished; the command that runs it owns the bar
(`progress_bar`, or `tracked` around an iterable). A bar goes to stderr, so stdout (JSON, CSV,
an export) stays exactly what it is without one.

Whether a bar is drawn: `--progress` / `--no-progress` when given, else `RAYGATE_PROGRESS`
(1 or 0), else only when stderr is a terminal, and then once the job has run for a second, so
that quick commands stay quiet.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

Progress = Callable[[int], None]
"""Told how many more items are done."""

ENV = "RAYGATE_PROGRESS"
_QUIET_S = 1.0  # on a terminal, jobs shorter than this draw nothing


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    """Add `--progress` / `--no-progress` (the `progress` attribute: True, False or None)."""
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"a progress bar on stderr (default: when stderr is a terminal; {ENV}=1/0)",
    )


def draws(show: bool | None = None) -> bool:
    """Whether a bar is drawn: `show` when given, else `RAYGATE_PROGRESS`, else whether
    stderr is a terminal."""
    always = _forced(show)
    return sys.stderr.isatty() if always is None else always


def _forced(show: bool | None) -> bool | None:
    if show is not None:
        return show
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    if value in ("1", "0"):
        return value == "1"
    raise ValueError(f"{ENV}={value!r}: expected 1 (draw progress bars) or 0 (never)")


@contextmanager
def progress_bar(
    description: str,
    *,
    total: int | None = None,
    unit: str = "it",
    show: bool | None = None,
    leave: bool = True,
) -> Iterator[Progress]:
    """A bar on stderr with the count, rate and (given `total`) the ETA; yields the callback
    that advances it. `show`: True draws at once, False never, None (the default) follows
    `RAYGATE_PROGRESS`, else draws on a terminal once the job has run for a second. `leave`
    keeps the finished bar on screen."""
    if not draws(show):
        yield _ignore
        return
    # Imported here: library modules import this one for `Progress` and never draw.
    from tqdm import tqdm

    with tqdm(
        desc=description,
        total=total,
        unit=unit,
        file=sys.stderr,
        leave=leave,
        delay=0.0 if _forced(show) else _QUIET_S,
        dynamic_ncols=True,
    ) as bar:
        yield bar.update


def reported(items: Iterable[T], progress: Progress) -> Iterator[T]:
    """`items`, calling `progress(1)` as each one is done (when the next one is asked for)."""
    for item in items:
        yield item
        progress(1)


def tracked(
    items: Iterable[T],
    description: str,
    *,
    total: int | None = None,
    unit: str = "it",
    show: bool | None = None,
    leave: bool = True,
) -> Iterator[T]:
    """`items` with a `progress_bar` over them; `total` defaults to `len(items)` where known."""
    if total is None and isinstance(items, Sized):
        total = len(items)
    with progress_bar(description, total=total, unit=unit, show=show, leave=leave) as advance:
        yield from reported(items, advance)


def _ignore(done: int) -> None:
    pass
