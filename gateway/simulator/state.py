"""Per-app runtime state: fault queue, request log, counters, RNG and id sequence."""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter, deque
from typing import Any

from starlette.requests import Request

from gateway.simulator.answer_book import AnswerBook
from gateway.simulator.faults import Fault, FaultQueue
from gateway.simulator.settings import SimulatorSettings
from gateway.simulator.tokens import TokenStore

REQUEST_LOG_SIZE = 1000
_REDACTED_HEADERS = frozenset({"authorization", "x-api-key", "x-goog-api-key", "api-key"})


class Stats:
    """Counters exposed by `GET /_sim/stats`."""

    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.streams_completed = 0
        self.streams_aborted_by_client = 0
        self.faults_applied = 0

    def reset(self) -> None:
        """Zero every counter."""
        self.requests.clear()
        self.streams_completed = self.streams_aborted_by_client = self.faults_applied = 0

    def snapshot(self) -> dict[str, Any]:
        """The counters as JSON."""
        return {
            "requests": dict(self.requests),
            "streams_completed": self.streams_completed,
            "streams_aborted_by_client": self.streams_aborted_by_client,
            "faults_applied": self.faults_applied,
        }


class SimulatorState:
    """Everything one simulator app mutates while it serves; lives on `app.state.sim`."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.faults = FaultQueue(settings.faults)
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
        self.stats = Stats()
        self._rng = random.Random(settings.seed)
        self.answer_book = AnswerBook.load(settings.answer_book) if settings.answer_book else None
        self._ids = itertools.count(1)
        self.tokens = TokenStore(ttl_s=settings.oauth_token_ttl_s)

    def record(self, request: Request, body: Any) -> None:
        """Log a request to a provider route and count it."""
        path: str = request.scope["path"]
        self.stats.requests[path] += 1
        headers = {
            name: "<redacted>" if name in _REDACTED_HEADERS else value
            for name, value in request.headers.items()
        }
        self.requests.append(
            {
                "path": path,
                "method": request.method,
                "headers": headers,
                "json": body,
                "received_at": time.time(),
            }
        )

    def take_fault(self, path: str, model: str | None) -> Fault | None:
        """The fault this request must suffer, if any (and count it as applied)."""
        fault = self.faults.take(path, model)
        if fault is not None:
            self.stats.faults_applied += 1
        return fault

    def latency_s(self) -> float:
        """A draw of the time to wait before the first byte, in seconds."""
        mean, jitter = self.settings.latency_ms, self.settings.latency_jitter_ms
        if jitter <= 0:
            return mean / 1000
        return max(0.0, self._rng.gauss(mean, jitter)) / 1000

    def next_id(self, prefix: str) -> str:
        """A new response id, e.g. `chatcmpl-sim000000000001`; sequential per app."""
        return f"{prefix}sim{next(self._ids):012d}"

    def key_ok(self, presented: str | None) -> bool:
        """Whether a presented API key is acceptable (anything is when none is configured)."""
        return self.settings.api_key is None or presented == self.settings.api_key


def get_state(request: Request) -> SimulatorState:
    """The state of the app serving `request`."""
    state: SimulatorState = request.app.state.sim
    return state
