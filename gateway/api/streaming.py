"""Server-sent event streams to the client.

Headers are committed only once the router has an upstream's first chunk in hand (a routed
stream is opened before it is answered), so a failure before that is an ordinary error
response with its status. A failure after it ends the stream with the wire's error event,
never a silent clean end. A client that goes away closes the stream, and with it the
upstream call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from starlette.responses import StreamingResponse

from gateway.errors import ClientClosedRequest, GatewayError

log = logging.getLogger(__name__)

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
DONE = b"data: [DONE]\n\n"


def sse_data(payload: dict[str, Any]) -> bytes:
    """One `data:` event."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    """One named event (`event:` + `data:`), as Anthropic streams them."""
    data = json.dumps(payload, separators=(",", ":")).encode()
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def sse_response(
    events: AsyncGenerator[bytes, None],
    *,
    error_event: Callable[[GatewayError], bytes],
    headers: dict[str, str],
    request_id: str,
    on_finish: Callable[[GatewayError | None], Awaitable[None]],
) -> StreamingResponse:
    """Send encoded `events`; a failure among them ends the stream with `error_event(...)`.

    `on_finish` hears how the stream ended: None when it completed, else the error, a
    ClientClosedRequest when the client went away first. It runs even when the response
    task is being cancelled.
    """

    async def body() -> AsyncGenerator[bytes, None]:
        outcome: GatewayError | None = ClientClosedRequest("The client closed the stream.")
        try:
            async with aclosing(events):
                async for event in events:
                    yield event
            outcome = None
        except GatewayError as exc:
            log.warning("stream %s failed after it started: %s", request_id, exc.message)
            outcome = exc
            yield error_event(exc)
        except Exception:
            log.exception("stream %s failed after it started", request_id)
            outcome = GatewayError(f"The gateway hit an internal error ({request_id}).")
            yield error_event(outcome)
        finally:
            await _shielded(on_finish(outcome))

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
    )


async def _shielded(work: Awaitable[None]) -> None:
    # A disconnect cancels the response task; the stream's audit record must still be queued.
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        log.debug("stream finished while its response task was being cancelled")
