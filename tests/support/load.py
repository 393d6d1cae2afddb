"""A bounded load generator that counts every request: what the fault tests and the cluster
benchmark drive a gateway with.

    with Load(base_url, api_key, clients=4) as load:
        load.wait_for_ok(20)          # traffic flows
        ...                           # kill something
        load.wait_for_ok(load.ok + 20)
    assert load.report().failed == 0

Each client is a thread with its own HTTP connection pool, sending one request after another,
alternating plain and streamed chat completions with a prompt never sent before (no cache
hit, no coalescing: every request crosses every stage). A plain request succeeds on a 200 with
a completion; a stream on a 200 whose events end with `[DONE]` after a finished choice. A
stream that ends any other way must end with an error event (`streams_cut_cleanly` counts
those that did not: a silent clean end of a broken stream).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

import httpx


@dataclass(frozen=True)
class Outcome:
    stream: bool
    ok: bool
    started: float
    ended: float
    detail: str = ""  # the status, error code and message of a failure
    cut_cleanly: bool = False  # a stream that ended without [DONE] and without an error


@dataclass
class Report:
    sent: int
    ok: int
    failed: int
    plain_failed: int
    stream_failed: int
    streams_cut_cleanly: int
    failures: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "plain_failed": self.plain_failed,
            "stream_failed": self.stream_failed,
            "streams_cut_cleanly": self.streams_cut_cleanly,
            "failures": dict(self.failures.most_common(10)),
        }


class Load:
    """`clients` threads sending chat completions to `base_url` until stopped."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        clients: int,
        model: str = "sim-small",
        streams: bool = True,
        timeout_s: float = 60.0,
    ) -> None:
        self.base_url = base_url
        self._headers = {"authorization": f"Bearer {api_key}"}
        self._model = model
        self._streams = streams
        self._timeout_s = timeout_s
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._outcomes: list[Outcome] = []
        self._ids = itertools.count()
        self._threads = [
            threading.Thread(target=self._client, name=f"load-{i}", daemon=True)
            for i in range(clients)
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop sending; returns once every request in flight has its outcome."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._timeout_s + 5)

    @property
    def ok(self) -> int:
        with self._lock:
            return sum(o.ok for o in self._outcomes)

    def wait_for_ok(self, count: int, timeout_s: float = 120.0) -> None:
        """Block until `count` requests have succeeded in all."""
        with self._lock:
            if not self._lock.wait_for(
                lambda: sum(o.ok for o in self._outcomes) >= count, timeout_s
            ):
                raise AssertionError(f"{count} successful requests not within {timeout_s:g}s: "
                                     f"{self._report_locked().as_dict()}")  # fmt: skip

    def outcomes(self) -> list[Outcome]:
        with self._lock:
            return list(self._outcomes)

    def report(self) -> Report:
        with self._lock:
            return self._report_locked()

    def _report_locked(self) -> Report:
        failed = [o for o in self._outcomes if not o.ok]
        return Report(
            sent=len(self._outcomes),
            ok=len(self._outcomes) - len(failed),
            failed=len(failed),
            plain_failed=sum(not o.stream for o in failed),
            stream_failed=sum(o.stream for o in failed),
            streams_cut_cleanly=sum(o.cut_cleanly for o in failed),
            failures=Counter(o.detail for o in failed),
            latencies_s=[o.ended - o.started for o in self._outcomes if o.ok],
        )

    # --- one client --------------------------------------------------------------------

    def _client(self) -> None:
        with httpx.Client(base_url=self.base_url, headers=self._headers) as http:
            for turn in itertools.count():
                if self._stop.is_set():
                    return
                stream = self._streams and turn % 2 == 1
                outcome = self._send(http, stream)
                with self._lock:
                    self._outcomes.append(outcome)
                    self._lock.notify_all()

    def _send(self, http: httpx.Client, stream: bool) -> Outcome:
        body = {
            "model": self._model,
            "messages": [{"role": "user", "content": f"load request {next(self._ids)}: hello"}],
            "stream": stream,
            "max_tokens": 16,
        }
        started = time.monotonic()
        try:
            if stream:
                ok, detail, cut = self._streamed(http, body)
            else:
                response = http.post("/v1/chat/completions", json=body, timeout=self._timeout_s)
                ok = response.status_code == 200 and bool(response.json().get("choices"))
                detail, cut = (
                    ("" if ok else _error_of(response.status_code, response.read())),
                    False,
                )
        except httpx.HTTPError as exc:
            ok, detail, cut = False, f"{type(exc).__name__}: {exc}"[:200], False
        return Outcome(stream, ok, started, time.monotonic(), detail, cut)

    def _streamed(self, http: httpx.Client, body: dict[str, object]) -> tuple[bool, str, bool]:
        """(ok, failure detail, ended cleanly without [DONE] or an error event)."""
        finished = done = errored = False
        with http.stream(
            "POST", "/v1/chat/completions", json=body, timeout=self._timeout_s
        ) as response:
            if response.status_code != 200:
                return False, _error_of(response.status_code, response.read()), False
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue
                data = line.removeprefix("data:").strip()
                if data == "[DONE]":
                    done = True
                    continue
                event = json.loads(data)
                if "error" in event:
                    errored = True
                    detail = f"stream error event: {event['error'].get('message', '')[:120]}"
                for choice in event.get("choices") or ():
                    finished = finished or choice.get("finish_reason") is not None
        if done and finished and not errored:
            return True, "", False
        if errored:
            return False, detail, False
        return False, "stream ended without [DONE] or an error event", True


def _error_of(status: int, body: bytes) -> str:
    """A failure's status, error code and message (what failures are counted by), else its
    text. The message says which stage failed and why, which a CI log needs when a rare
    failure cannot be reproduced."""
    try:
        error = json.loads(body)["error"]
        code = error.get("code") or error.get("type")
        return f"{status} {code}: {str(error.get('message', ''))[:160]}"
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{status} {body[:120].decode(errors='replace')}"
