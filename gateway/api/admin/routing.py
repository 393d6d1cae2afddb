"""Admin API over routing: `GET /admin/routing` (breakers, health and load of every target,
one router replica's view) and `GET /admin/providers` (which providers are on, and why not)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from gateway.api.admin import AdminGate
from gateway.api.backend import Backend
from gateway.api.openapi import answers
from gateway.config import ProviderConfig
from gateway.routing.config import ModelAlias
from gateway.routing.status import RoutingStatus


def routing_routes(
    gate: AdminGate,
    backend: Backend,
    providers: Mapping[str, ProviderConfig],
    models: Mapping[str, ModelAlias],
) -> APIRouter:
    """The routing routes (admin credentials only); `models` are the enabled aliases."""
    router = APIRouter()

    @router.get("/admin/routing", responses=answers(RoutingStatus))
    async def admin_routing(request: Request) -> Response:
        await gate(request, "reports.read", action="routing.read")
        status = await backend.routing_status()
        return JSONResponse(status.model_dump(mode="json"))

    @router.get("/admin/providers", responses=answers(None))
    async def admin_providers(request: Request) -> Response:
        await gate(request, "reports.read", action="providers.read")
        return JSONResponse(
            {
                "providers": [
                    {
                        "name": name,
                        "kind": p.resolved_preset.kind,
                        "base_url": p.resolved_preset.base_url,
                        "enabled": p.disabled_reason() is None,
                        "disabled_reason": p.disabled_reason(),
                    }
                    for name, p in providers.items()
                ],
                "models": {
                    alias: [t.label for t in entry.targets] for alias, entry in models.items()
                },
            }
        )

    return router
