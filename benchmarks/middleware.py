"""What the exchange middleware costs per request: raygate's plain-ASGI `_ExchangePerRequest`
against the same work in Starlette's `BaseHTTPMiddleware` (which raygate used before
2026-12-04) and against no middleware, in process (no server, no network), interleaved rounds.

Both middlewares do the same work around a trivial JSON endpoint: open an exchange, set a
header on the response as it starts. What differs is how: `BaseHTTPMiddleware` runs the app in
a second task and copies the response through a memory stream; the plain one wraps `send`.

    python -m benchmarks.middleware [--requests 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import MutableHeaders

from benchmarks.report import Report, markdown_table
from gateway.api.app import _ExchangePerRequest


class _Responder:
    """The part of `Responder` the middleware calls, doing only the header work."""

    def open(self, request: Request) -> SimpleNamespace:
        return SimpleNamespace(request_id="req_bench", template=None)

    async def close(self, exchange: SimpleNamespace, status: int, headers: MutableHeaders) -> None:
        headers["x-raygate-request-id"] = exchange.request_id


def _app(kind: str) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/echo")
    async def echo(request: Request) -> Response:
        return JSONResponse({"received": len(await request.body())})

    responder: Any = _Responder()
    if kind == "BaseHTTPMiddleware":

        async def middleware(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            exchange = responder.open(request)
            response = await call_next(request)
            await responder.close(exchange, response.status_code, response.headers)
            return response

        app.middleware("http")(middleware)
    elif kind == "plain ASGI (raygate)":
        app.add_middleware(_ExchangePerRequest, responder=responder)
    return app


async def _call(app: FastAPI) -> None:
    messages = [{"type": "http.request", "body": b'{"model": "m"}', "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        return None

    scope = {
        "type": "http", "method": "POST", "path": "/v1/echo", "raw_path": b"/v1/echo",
        "query_string": b"", "headers": [(b"content-type", b"application/json")],
        "http_version": "1.1", "scheme": "http", "server": ("gw", 80),
        "client": ("127.0.0.1", 1), "root_path": "", "asgi": {"version": "3.0"},
    }  # fmt: skip
    await app(scope, receive, send)


async def _measure(requests: int, rounds: int) -> dict[str, list[float]]:
    apps = {k: _app(k) for k in ("no middleware", "BaseHTTPMiddleware", "plain ASGI (raygate)")}
    for app in apps.values():  # warm up
        for _ in range(200):
            await _call(app)
    per_round: dict[str, list[float]] = {kind: [] for kind in apps}
    for _ in range(rounds):
        for kind, app in apps.items():
            started = time.perf_counter()
            for _ in range(requests):
                await _call(app)
            per_round[kind].append((time.perf_counter() - started) / requests * 1e6)
    return per_round


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round and app")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    report = Report("middleware", parameters=vars(args))
    per_round = asyncio.run(_measure(args.requests, args.rounds))
    rows = [
        {
            "middleware": kind,
            "us_per_request_median": round(statistics.median(values), 1),
            "us_per_request_rounds": [round(v, 1) for v in values],
        }
        for kind, values in per_round.items()
    ]
    table = markdown_table(
        ["middleware", "us per request (median of rounds)"],
        [[r["middleware"], r["us_per_request_median"]] for r in rows],
    )
    print(table)
    report.write({"rows": rows, "summary_markdown": table})


if __name__ == "__main__":
    main()
