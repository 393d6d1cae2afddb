"""AWS's binary event-stream framing (`application/vnd.amazon.eventstream`), read from an
httpx response through botocore's own parser (prelude and message CRCs checked)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from botocore.eventstream import EventStreamBuffer, ParserError

from gateway.errors import UpstreamError


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """One decoded message: `:message-type` (event, exception or error), its
    `:event-type` / `:exception-type` / `:error-code`, and the JSON payload."""

    message_type: str
    name: str
    payload: Any


async def messages(chunks: AsyncIterator[bytes], *, where: str) -> AsyncIterator[StreamMessage]:
    """The messages framed in a byte stream; `UpstreamError` for a corrupt frame or payload,
    or bytes left over when the stream ends."""
    buffer = EventStreamBuffer()
    pending = 0  # bytes received but not yet part of a whole message
    async for chunk in chunks:
        buffer.add_data(chunk)
        pending += len(chunk)
        try:
            for message in buffer:
                pending -= message.prelude.total_length
                yield _decoded(message.headers, message.payload, where)
        except ParserError as exc:
            raise UpstreamError(f"{where} sent a corrupt event-stream frame: {exc}") from None
    if pending:
        raise UpstreamError(f"{where} ended the stream inside an event-stream frame")


def _decoded(headers: dict[str, Any], payload: bytes, where: str) -> StreamMessage:
    message_type = str(headers.get(":message-type", "event"))
    if message_type == "error":
        name = str(headers.get(":error-code", "error"))
        return StreamMessage(message_type, name, {"message": headers.get(":error-message", "")})
    name = str(headers.get(":event-type") or headers.get(":exception-type") or "")
    try:
        data = json.loads(payload) if payload else {}
    except ValueError:
        raise UpstreamError(f"{where} sent a {name} event whose payload is not JSON") from None
    return StreamMessage(message_type, name, data)
