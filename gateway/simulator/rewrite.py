"""Serving a cloud route with another format's handler: the same request, with the body or
headers the handler expects (Azure's deployment as the model, Vertex AI's publisher model).

The path is kept, so faults matching it and the request log see the route the client called.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

Handler = Any  # a Starlette endpoint: async (Request) -> Response


async def body_of(request: Request) -> Any:
    """The request's JSON body (None when absent or not JSON); not logged here, the handler
    that answers logs it."""
    raw = await request.body()
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


async def delegate(
    request: Request,
    handler: Handler,
    body: Any,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """`handler`'s answer to `request` with `body` as its JSON body and `headers` set."""
    raw = json.dumps(body).encode()
    kept = [
        (name, value)
        for name, value in request.scope["headers"]
        if name not in (b"content-length", *(n.lower().encode() for n in headers or {}))
    ]
    added = [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    scope = {
        **request.scope,
        "headers": [*kept, *added, (b"content-length", str(len(raw)).encode())],
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await request.receive()

    response: Response = await handler(Request(scope, receive))
    return response
