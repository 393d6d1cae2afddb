"""A scripted upstream: a real HTTP server on loopback that speaks OpenAI's chat wire format
and answers each request with the next reply a test queued.

The simulator answers by echoing the prompt, which is what most attacks need. The output-side
attacks need answers no echo gives: what a hostile or manipulated model sends back (a refusal
or reasoning content that carries a value, a value split across chunks and choices, an audio
transcript). A test queues exactly those bytes here and drives them through the gateway.

    upstream.script(reply(message(content="hi")))            # one whole answer
    upstream.script(stream(delta(0, content="h"), ...))      # one streamed answer

Control API: `POST /_script` (`{"replies": [...]}` appended), `DELETE /_script` (replies and
log cleared), `GET /_script/requests` (the JSON bodies received, oldest first).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Reply = dict[str, Any]


def message(**fields: Any) -> dict[str, Any]:
    """An assistant message with `fields` (content, refusal, tool_calls, reasoning_content...)."""
    return {"role": "assistant", "content": None, **fields}


def reply(*messages: dict[str, Any]) -> Reply:
    """A whole chat completion whose choice i carries `messages[i]`."""
    choices = [
        {"index": i, "message": m, "finish_reason": "stop", "logprobs": None}
        for i, m in enumerate(messages)
    ]
    return {
        "json": {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": "hostile-model",
            "choices": choices,
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
    }


def delta(index: int, finish_reason: str | None = None, **fields: Any) -> dict[str, Any]:
    """One streamed chunk's choice: `fields` for choice `index`."""
    return {"index": index, "delta": fields, "finish_reason": finish_reason, "logprobs": None}


def stream(*choices: dict[str, Any]) -> Reply:
    """A streamed chat completion: one chunk per `delta(...)`, then `[DONE]`."""
    chunks = [
        {
            "id": "chatcmpl-scripted",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "hostile-model",
            "choices": [choice],
        }
        for choice in choices
    ]
    return {"chunks": chunks}


def create_app() -> Starlette:
    """The scripted upstream's ASGI app."""
    replies: deque[Reply] = deque()
    received: list[Any] = []

    async def chat(request: Request) -> Response:
        body = json.loads(await request.body() or b"null")
        received.append(body)
        if not replies:
            error = {"message": "no scripted reply queued", "type": "server_error"}
            return JSONResponse({"error": error}, status_code=500)
        queued = replies.popleft()
        if "chunks" not in queued:
            return JSONResponse(queued["json"])

        async def events() -> AsyncIterator[bytes]:
            for chunk in queued["chunks"]:
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def add(request: Request) -> Response:
        replies.extend(json.loads(await request.body())["replies"])
        return JSONResponse({"queued": len(replies)})

    async def clear(request: Request) -> Response:
        replies.clear()
        received.clear()
        return JSONResponse({"queued": 0})

    async def requests(request: Request) -> Response:
        return JSONResponse({"requests": received})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/_script", add, methods=["POST"]),
            Route("/_script", clear, methods=["DELETE"]),
            Route("/_script/requests", requests, methods=["GET"]),
        ]
    )


class ScriptedUpstream:
    """A client of a running scripted upstream's control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def script(self, *replies: Reply) -> None:
        """Queue `replies`, answered in order, one per request."""
        response = httpx.post(f"{self.url}/_script", json={"replies": list(replies)})
        response.raise_for_status()

    def reset(self) -> None:
        """Drop queued replies and the request log."""
        httpx.delete(f"{self.url}/_script").raise_for_status()

    def bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies received, oldest first."""
        return list(httpx.get(f"{self.url}/_script/requests").json()["requests"])
