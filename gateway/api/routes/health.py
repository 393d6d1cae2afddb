"""Liveness and readiness probes, for load balancers and Kubernetes (never audited)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from gateway.api.backend import Backend
from gateway.api.caching import CacheBackend
from gateway.api.openapi import Status, answers

_CACHE_CHECK_S = 5.0


def health_routes(backend: Backend, cache: CacheBackend | None) -> APIRouter:
    """`GET /healthz` (the process answers) and `GET /readyz` (every stage can answer: the
    router, the local models that should always run, and the cache when there is one; 503
    naming what is not ready yet)."""
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
        waiting = await backend.not_ready()
        if cache is not None:
            try:
                await asyncio.wait_for(cache.stats(), _CACHE_CHECK_S)
            except Exception as exc:  # the cache replicas still loading, or gone
                waiting.append(f"the semantic cache: {type(exc).__name__}")
        if waiting:
            body = Status(status="not ready", waiting_for=waiting)
            return JSONResponse(body.model_dump(exclude_none=True), status_code=503)
        return JSONResponse({"status": "ready"})

    return router
