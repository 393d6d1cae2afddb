"""Injected upstream failures: the fault model and the runtime queue that hands them out."""

from __future__ import annotations

import logging
from collections import deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FaultKind = Literal["status", "hang", "cut", "malformed", "delay"]


class Fault(BaseModel):
    """One injected failure, applied to the next `count` matching model requests.

    * `status`: answer `status` with the provider's error body (and `Retry-After` when
      `retry_after` is set).
    * `hang`: never answer; the request ends when the client disconnects. A stream with
      `after_chunks` > 0 sends that many chunks first, then stalls the same way.
    * `cut`: streams send `after_chunks` good chunks, then the connection is dropped
      mid-body; other requests see the connection closed without any response.
    * `malformed`: streams send `after_chunks` good chunks, then one event whose data is not
      JSON, then end; other requests get status 200 with a body that is not JSON.
    * `delay`: wait `delay_ms` more before the first byte, then answer normally.
    """

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    status: int = Field(default=500, ge=400, le=599)
    retry_after: float | None = Field(default=None, ge=0)
    after_chunks: int = Field(default=0, ge=0)
    delay_ms: float = Field(default=0.0, ge=0)
    count: int | None = Field(default=1, ge=1)
    match_model: str | None = None
    match_path: str | None = None

    def matches(self, path: str, model: str | None) -> bool:
        """Whether this fault applies to a request for `model` on `path`."""
        if self.match_model is not None and self.match_model != model:
            return False
        return self.match_path is None or self.match_path in path


class FaultQueue:
    """Faults in insertion order; each matching request consumes one use of the first match."""

    def __init__(self, faults: list[Fault] | None = None) -> None:
        self._faults: deque[Fault] = deque()
        self.extend(faults or [])

    def extend(self, faults: list[Fault]) -> None:
        """Append faults at the end of the queue."""
        self._faults.extend(fault.model_copy() for fault in faults)

    def clear(self) -> None:
        """Drop every pending fault."""
        self._faults.clear()

    def pending(self) -> list[Fault]:
        """The faults still queued, with `count` set to their remaining uses."""
        return [fault.model_copy() for fault in self._faults]

    def take(self, path: str, model: str | None) -> Fault | None:
        """Consume one use of the first fault matching this request, if any."""
        if not self._faults:
            return None
        for fault in self._faults:
            if fault.matches(path, model):
                break
        else:
            return None
        if fault.count is not None:
            fault.count -= 1
            if fault.count == 0:
                self._faults.remove(fault)
        return fault

    def __len__(self) -> int:
        return len(self._faults)


class SimulatedCut(Exception):
    """Raised inside a response to make the server drop the connection mid-response."""


class _DropSimulatedCuts(logging.Filter):
    """Keeps the server's "Exception in ASGI application" tracebacks for cuts out of the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]
        return not isinstance(exc, SimulatedCut)


def silence_cut_tracebacks(logger_name: str = "uvicorn.error") -> None:
    """Install (once) a filter that hides the tracebacks servers log for injected cuts."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, _DropSimulatedCuts) for f in logger.filters):
        logger.addFilter(_DropSimulatedCuts())
