"""Reading a request body within a size limit and a time limit.

Neither Ray Serve's HTTP proxy (uvicorn) nor Starlette bounds how long a client may take to
send its body, so a client that trickles a byte now and then (a slow-body "slowloris") holds an
ingress replica's request slot (`max_ongoing_requests`) for as long as it likes; a few hundred
such clients fill every slot. `read_body` reads the whole body before anything else runs and
gives up once `timeout_s` has passed since it started, whatever the pace.

Slow headers (a request line and headers that never finish) never reach the app: bound them in
front of the gateway (a load balancer's header timeout, e.g. nginx `client_header_timeout`,
HAProxy `timeout http-request`); see docs/security.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gateway.errors import PayloadTooLarge, RequestTimeout


async def read_body(
    chunks: AsyncIterator[bytes],
    *,
    limit: int,
    timeout_s: float,
    declared_length: str | None = None,
) -> bytes:
    """The body from `chunks` (Starlette's `request.stream()`), at most `limit` bytes, read
    within `timeout_s` seconds: PayloadTooLarge (413) or RequestTimeout (408) otherwise.

    A declared `Content-Length` over the limit is refused before anything is read.
    """
    if declared_length and declared_length.isdigit() and int(declared_length) > limit:
        raise _too_large(limit)
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                parts.append(chunk)
    except TimeoutError:
        raise RequestTimeout(
            f"The request body did not arrive within {timeout_s:g} seconds."
        ) from None
    return b"".join(parts)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the gateway's limit of {limit} bytes.")
