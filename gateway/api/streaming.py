"""Server-sent event streams to the client.

Headers are committed only after the router has an upstream's first chunk in hand, so a
failure before that is an ordinary error response with its status. A failure after it ends
the stream with an error event, never a silent clean end. A client that goes away cancels the
upstream call.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.responses import StreamingResponse

from gateway.errors import ClientClosedRequest, GatewayError, UpstreamError
from gateway.routing.router import Route

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


async def open_routed_stream(items: AsyncIterator[Any]) -> Route:
    """Wait for the router's Route, which it sends once the first upstream chunk is in.

    Raises the router's GatewayError when no target could start a stream.
    """
    try:
        first = await anext(items)
    except StopAsyncIteration:
        raise UpstreamError("the router ended the stream before it started") from None
    if not isinstance(first, Route):
        raise UpstreamError("the router sent a chunk before its route")
    return first


def stream_response(
    items: AsyncIterator[Any],
    *,
    encode: Callable[[Any], bytes | None],
    on_error: Callable[[GatewayError], bytes],
    done: bytes | None,
    headers: dict[str, str],
    request_id: str,
    on_finish: Callable[[GatewayError | None], Awaitable[None]] | None = None,
) -> StreamingResponse:
    """Send `items` encoded as SSE; end with `done`, or with `on_error(...)` on failure.

    `on_finish` hears how the stream ended: None when it completed, else the error, a
    ClientClosedRequest when the client went away first.
    """

    async def body() -> AsyncIterator[bytes]:
        outcome: GatewayError | None = ClientClosedRequest("The client closed the stream.")
        try:
            async for item in items:
                encoded = encode(item)
                if encoded:
                    yield encoded
            outcome = None
        except GatewayError as exc:
            log.warning("stream %s failed after it started: %s", request_id, exc.message)
            outcome = exc
            yield on_error(exc)
            return
        except Exception:
            log.exception("stream %s failed after it started", request_id)
            outcome = GatewayError(f"The gateway hit an internal error ({request_id}).")
            yield on_error(outcome)
            return
        finally:
            await items.aclose()  # type: ignore[attr-defined]
            if on_finish is not None:
                await _shielded(on_finish(outcome))
        if done:
            yield done

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
    )


async def _shielded(work: Awaitable[None]) -> None:
    # A disconnect cancels the response task; the stream's audit record must still be queued.
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        log.debug("stream finished while its response task was being cancelled")
