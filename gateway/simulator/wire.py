"""Response machinery shared by the three formats: latency, faults, and event streams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from gateway.simulator.faults import Fault, SimulatedCut
from gateway.simulator.state import SimulatorState, Stats, get_state

RAW_SEND_SCOPE_KEY = "raygate.simulator.raw_send"
"""Scope key under which the app keeps the server's own `send` (to reach its transport)."""

_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

ErrorRenderer = Callable[[int, str, dict[str, str]], Response]
"""Renders `(status, message, headers)` in a provider's error shape."""


class BadRequest(ValueError):
    """A request the provider would reject with 400; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


async def read_json(request: Request) -> tuple[SimulatorState, Any]:
    """The app state and the parsed body (None when absent or not JSON); logs the request."""
    state = get_state(request)
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    state.record(request, body)
    return state, body


def json_response(content: Any, status_code: int = 200, **kwargs: Any) -> Response:
    """A compact JSON response."""
    return JSONResponse(content, status_code=status_code, **kwargs)


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else _encode(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def sse_batch(head: dict[str, Any], key: str, values: Iterable[Any]) -> list[bytes]:
    """Events `{**head, key: value}` for each value, encoding the shared `head` only once."""
    prefix = f'data: {_encode(head)[:-1]},"{key}":'.encode()
    return [prefix + _encode(value).encode() + b"}\n\n" for value in values]


async def before_first_byte(
    state: SimulatorState,
    fault: Fault | None,
    render_error: ErrorRenderer,
    *,
    stream: bool,
) -> Response | None:
    """Wait the drawn latency, then answer for the fault if it replaces the response.

    Returns None when the normal response should follow (no fault, a `delay` fault, or a
    `cut` / `malformed` fault that a stream applies itself through `event_stream`).
    """
    if fault is not None and fault.kind == "hang" and not (stream and fault.after_chunks):
        return _HangResponse()
    delay = state.latency_s()
    if fault is not None and fault.kind == "delay":
        delay += fault.delay_ms / 1000
    if delay > 0:
        await asyncio.sleep(delay)
    if fault is None or fault.kind in ("delay", "hang") or (stream and fault.kind != "status"):
        return None
    if fault.kind == "status":
        headers = {}
        if fault.retry_after is not None:
            headers["retry-after"] = _seconds(fault.retry_after)
        return render_error(fault.status, f"Simulated upstream error {fault.status}", headers)
    if fault.kind == "cut":
        return _CutResponse()
    return Response(b'{"id": "malformed", "choices": [', media_type="application/json")


def event_stream(
    state: SimulatorState,
    events: Sequence[bytes],
    fault: Fault | None,
    malformed: bytes,
    *,
    media_type: str = "text/event-stream",
) -> Response:
    """Stream prebuilt events, paced by `tokens_per_s`, applying a `cut`/`malformed`/`hang`.

    The fault strikes after `fault.after_chunks` events, but never later than just before
    the last event, so a faulted stream never looks complete.
    """
    interval = 1 / state.settings.tokens_per_s if state.settings.tokens_per_s > 0 else 0.0
    if fault is None or fault.kind not in ("cut", "malformed", "hang"):
        body = _paced(events, interval)
    else:
        strike = min(fault.after_chunks, max(len(events) - 1, 0))
        body = _paced(events[:strike], interval, fault.kind, malformed)
    return _EventStream(body, state.stats, media_type)


async def _paced(
    events: Sequence[bytes],
    interval: float,
    fault_kind: str | None = None,
    malformed: bytes = b"",
) -> AsyncIterator[bytes]:
    if not interval:
        if events:
            yield b"".join(events)  # unpaced: one write is much cheaper than one per event
    else:
        for index, event in enumerate(events):
            if index:
                await asyncio.sleep(interval)
            yield event
    if fault_kind == "cut":
        raise SimulatedCut(f"stream cut after {len(events)} chunks")
    if fault_kind == "malformed":
        yield malformed
    if fault_kind == "hang":
        await asyncio.Event().wait()  # silent until the client goes away and cancels us


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


class _EventStream(StreamingResponse):
    """A streaming response that counts streams completed and abandoned by the client."""

    def __init__(self, body: AsyncIterator[bytes], stats: Stats, media_type: str) -> None:
        super().__init__(body, media_type=media_type, headers={"cache-control": "no-cache"})
        self._stats = stats

    async def stream_response(self, send: Send) -> None:
        try:
            await super().stream_response(send)
        except (asyncio.CancelledError, OSError):
            # Cancelled once the client went away (or the server shuts down); servers on
            # ASGI spec 2.4 raise OSError from `send` instead.
            self._stats.streams_aborted_by_client += 1
            raise
        else:
            self._stats.streams_completed += 1
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


class _HangResponse(Response):
    """Never answers: waits until the client disconnects, then ends without a response."""

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await _until_disconnect(receive)


class _CutResponse(Response):
    """Drops the connection without sending a byte of response.

    The server's transport is reached through the `send` it handed the app (uvicorn's
    request cycle keeps it as `.transport`). Where there is none (an in-process transport,
    an app mounted inside another), the response head is sent and `SimulatedCut` raised,
    so the client still sees a connection that ends before the body.
    """

    def __init__(self) -> None:
        super().__init__()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cycle = getattr(scope.get(RAW_SEND_SCOPE_KEY), "__self__", None)
        abort = getattr(getattr(cycle, "transport", None), "abort", None)
        if callable(abort):
            abort()
            await _until_disconnect(receive)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"64")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        raise SimulatedCut("connection cut before the response body")


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
