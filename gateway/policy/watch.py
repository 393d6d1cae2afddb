"""A file the policy re-reads when it changes: `policy.file`, `policy.topics_file`.

A stat per call (mtime and size) says whether the file changed; only then is it read and
parsed. A file that cannot be read or parsed is refused, logged once, and the last good
content stays.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import yaml
from pydantic import ValidationError

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNREADABLE = (0, 0)

# What a broken edit raises while being read and parsed.
ParseError = (yaml.YAMLError, ValidationError, OSError, AttributeError, ValueError, KeyError)


class WatchedFile(Generic[T]):
    """`parse(path)` of a file, redone whenever the file's mtime or size changes."""

    def __init__(self, path: str | Path, parse: Callable[[Path], T], what: str) -> None:
        self.path = Path(path)
        self._parse = parse
        self._what = what
        self._seen: tuple[int, int] | None = None
        self._lock = threading.Lock()

    def changed(self) -> T | None:
        """The newly parsed content when the file changed since the last call and parses;
        None when it did not change, or the change was refused (logged)."""
        try:
            stat = self.path.stat()
        except OSError as exc:
            if self._seen != _UNREADABLE:
                log.error("%s %s unreadable (%s); keeping the last one", self._what, self.path, exc)
                self._seen = _UNREADABLE
            return None
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return None
        with self._lock:
            if seen == self._seen:
                return None
            self._seen = seen
            try:
                return self._parse(self.path)
            except ParseError as exc:
                log.error("%s %s refused, keeping the last one: %s", self._what, self.path, exc)
                return None
