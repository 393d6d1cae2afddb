"""Admin API over routing: `GET /admin/routing` (breakers, health and load of every target,
one router replica's view) and `GET /admin/providers` (which providers are on, and why not)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from gateway.api.app import GatewayAPI


def add_routing_routes(app: FastAPI, api: GatewayAPI) -> None:
    """Register the routing routes (admin credentials only)."""

    @app.get("/admin/routing")
    async def admin_routing(request: Request) -> Response:
        api.admin(request)
        status = await api.backend.routing_status()
        return JSONResponse(status.model_dump(mode="json"))

    @app.get("/admin/providers")
    async def admin_providers(request: Request) -> Response:
        api.admin(request)
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
                    for name, p in api.config.providers.items()
                ],
                "models": {
                    alias: [t.label for t in entry.targets] for alias, entry in api.models.items()
                },
            }
        )
