"""Liveness and readiness probes, for load balancers and Kubernetes (never audited)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from gateway.api.backend import Backend
from gateway.api.openapi import Status, answers


def health_routes(backend: Backend) -> APIRouter:
    """`GET /healthz` (the process answers) and `GET /readyz` (the router can route)."""
    router = APIRouter()

    @router.get(
        "/healthz",
        summary="Liveness",
        openapi_extra={"security": []},
        responses=answers(Status),
    )
    async def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @router.get(
        "/readyz",
        summary="Readiness: every stage can answer",
        openapi_extra={"security": []},
        responses={**answers(Status), 503: {"description": "not ready", "model": Status}},
    )
    async def readyz() -> Response:
        ready = await backend.ready()
        return JSONResponse(
            {"status": "ready" if ready else "not ready"}, status_code=200 if ready else 503
        )

    return router
