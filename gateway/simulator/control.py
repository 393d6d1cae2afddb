"""The control API under `/_sim/` (faults, request log, counters) and `/healthz`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.simulator.faults import Fault
from gateway.simulator.state import get_state
from gateway.simulator.wire import json_response


class FaultBatch(BaseModel):
    """Body of `POST /_sim/faults`."""

    faults: list[Fault]


async def add_faults(request: Request) -> Response:
    """Append faults to the queue; answers with the queue."""
    state = get_state(request)
    try:
        batch = FaultBatch.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        return json_response({"error": {"message": "invalid faults", "details": errors}}, 400)
    state.faults.extend(batch.faults)
    return _faults(state.faults.pending())


async def list_faults(request: Request) -> Response:
    """The faults still queued, with their remaining counts."""
    return _faults(get_state(request).faults.pending())


async def clear_faults(request: Request) -> Response:
    """Drop every queued fault."""
    get_state(request).faults.clear()
    return _faults([])


async def list_requests(request: Request) -> Response:
    """The most recent provider requests, oldest first."""
    return json_response({"requests": list(get_state(request).requests)})


async def clear_requests(request: Request) -> Response:
    """Forget the recorded requests."""
    get_state(request).requests.clear()
    return json_response({"requests": []})


async def stats(request: Request) -> Response:
    """Counters: requests per path, streams completed / abandoned, faults applied."""
    return json_response(get_state(request).stats.snapshot())


async def reset_stats(request: Request) -> Response:
    """Zero the counters."""
    counters = get_state(request).stats
    counters.reset()
    return json_response(counters.snapshot())


async def healthz(request: Request) -> Response:
    """Liveness: always `{"status": "ok"}`."""
    return json_response({"status": "ok"})


routes = [
    Route("/_sim/faults", add_faults, methods=["POST"]),
    Route("/_sim/faults", list_faults, methods=["GET"]),
    Route("/_sim/faults", clear_faults, methods=["DELETE"]),
    Route("/_sim/requests", list_requests, methods=["GET"]),
    Route("/_sim/requests", clear_requests, methods=["DELETE"]),
    Route("/_sim/stats", stats, methods=["GET"]),
    Route("/_sim/stats", reset_stats, methods=["DELETE"]),
    Route("/healthz", healthz, methods=["GET"]),
]


def _faults(faults: list[Fault]) -> Response:
    body: dict[str, Any] = {"faults": [fault.model_dump() for fault in faults]}
    return json_response(body)
