"""Server-sent event streams to the client.

Headers are committed only after the router has an upstream's first chunk in hand, so a
failure before that is an ordinary error response with its status. A failure after it ends
the stream with an error event, never a silent clean end. A client that goes away cancels the
upstream call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.responses import StreamingResponse

from gateway.errors import GatewayError, UpstreamError
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
) -> StreamingResponse:
    """Send `items` encoded as SSE; end with `done`, or with `on_error(...)` on failure."""

    async def body() -> AsyncIterator[bytes]:
        try:
            async for item in items:
                encoded = encode(item)
                if encoded:
                    yield encoded
        except GatewayError as exc:
            log.warning("stream %s failed after it started: %s", request_id, exc.message)
            yield on_error(exc)
            return
        except Exception:
            log.exception("stream %s failed after it started", request_id)
            yield on_error(GatewayError(f"The gateway hit an internal error ({request_id})."))
            return
        finally:
            await items.aclose()  # type: ignore[attr-defined]
        if done:
            yield done

    return StreamingResponse(
        body(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers}
    )
