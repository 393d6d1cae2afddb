"""AWS's binary event-stream framing, written: each message is a prelude (total and header
lengths, big-endian, and their CRC32), string headers, the payload and a CRC32 of it all."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

MEDIA_TYPE = "application/vnd.amazon.eventstream"
_STRING = 7  # the header value type of a UTF-8 string


def frame(headers: dict[str, str], payload: bytes) -> bytes:
    """One message with string headers."""
    encoded = b""
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        encoded += struct.pack(">B", len(raw_name)) + raw_name
        encoded += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", zlib.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


def event(event_type: str, payload: dict[str, Any]) -> bytes:
    """An `event` message with a JSON payload."""
    headers = {":event-type": event_type, ":content-type": "application/json",
               ":message-type": "event"}  # fmt: skip
    return frame(headers, json.dumps(payload, separators=(",", ":")).encode())


def exception(exception_type: str, message: str) -> bytes:
    """An `exception` message (e.g. `throttlingException`) with `{"message"}`."""
    headers = {":exception-type": exception_type, ":content-type": "application/json",
               ":message-type": "exception"}  # fmt: skip
    return frame(headers, json.dumps({"message": message}).encode())


def corrupt(message: bytes) -> bytes:
    """`message` with its final CRC broken: what a `malformed` fault sends."""
    return message[:-4] + struct.pack(">I", (struct.unpack(">I", message[-4:])[0] + 1) % 2**32)
