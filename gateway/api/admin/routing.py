"""Admin API over routing and providers:

GET    /admin/routing              breakers, health and load of every target (one router
                                   replica's view)
GET    /admin/routing/replicas     the same, as each router replica last published it on the
                                   status board (within 3 publish intervals)
GET    /admin/providers            which providers are on, why not, and whose key is set here
PUT    /admin/providers/{name}/key an upstream's API key, set or rotated at run time (sealed in
                                   the database; every replica within routing.key_sync_interval_s)
DELETE /admin/providers/{name}/key the config's own key applies again
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.admin import AdminGate
from gateway.api.backend import Backend
from gateway.api.errors import validated
from gateway.api.openapi import answers, request_body
from gateway.errors import InvalidRequest, NotFound
from gateway.providers.keys import KeyedConfig, ProviderKeyStore
from gateway.routing.board import StatusBoard
from gateway.routing.status import ReplicaStatuses, RoutingStatus


class ProviderKey(BaseModel):
    """Body of `PUT /admin/providers/{name}/key`."""

    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=1, repr=False, description="the upstream's key; never shown")


def routing_routes(
    gate: AdminGate,
    backend: Backend,
    board: StatusBoard,
    keyed: KeyedConfig,
    store: ProviderKeyStore | None,
) -> APIRouter:
    """The routing and provider routes (admin credentials only)."""
    router = APIRouter()

    @router.get("/admin/routing", responses=answers(RoutingStatus))
    async def admin_routing(request: Request) -> Response:
        await gate(request, "reports.read", action="routing.read")
        status = await backend.routing_status()
        return JSONResponse(status.model_dump(mode="json"))

    @router.get("/admin/routing/replicas", responses=answers(ReplicaStatuses))
    async def admin_routing_replicas(request: Request) -> Response:
        await gate(request, "reports.read", action="routing.read")
        interval = keyed.base.routing.status_publish_interval_s
        # Three intervals: a replica that missed one publish (a slow database) is still shown.
        replicas = await asyncio.to_thread(board.read, 3 * interval)
        answer = ReplicaStatuses(replicas=replicas, interval_s=interval)
        return JSONResponse(answer.model_dump(mode="json"))

    @router.get("/admin/providers", responses=answers(None))
    async def admin_providers(request: Request) -> Response:
        await gate(request, "reports.read", action="providers.read")
        config = await keyed.fresh()
        set_here = {info.provider: info.as_dict() for info in keyed.infos}
        return JSONResponse(
            {
                "providers": [
                    {
                        "name": name,
                        "kind": p.resolved_preset.kind,
                        "base_url": p.resolved_preset.base_url,
                        "enabled": p.disabled_reason() is None,
                        "disabled_reason": p.disabled_reason(),
                        "runtime_key": set_here.get(name),
                    }
                    for name, p in config.providers.items()
                ],
                "models": {
                    alias: [t.label for t in entry.targets]
                    for alias, entry in config.enabled_models().items()
                },
                "key_sync_interval_s": config.routing.key_sync_interval_s,
            }
        )

    def provider_store(request: Request, name: str) -> ProviderKeyStore:
        request.state.exchange.admin_target = f"provider:{name}"
        if name not in keyed.base.providers:
            raise NotFound(f"No provider {name!r} is configured.", param="name")
        if store is None:
            raise InvalidRequest(
                "Provider keys are stored only sealed: set storage.data_key (RAYGATE_DATA_KEY).",
                code="provider_keys_not_enabled",
            )
        return store

    @router.put(
        "/admin/providers/{name}/key",
        openapi_extra=request_body(ProviderKey),
        responses=answers(None),
    )
    async def set_provider_key(request: Request, name: str) -> Response:
        admin = await gate(request, "providers.write", action="providers.set_key")
        keys = provider_store(request, name)
        body = validated(ProviderKey, await request.body())
        info = await asyncio.to_thread(keys.set, name, body.api_key, by=admin.user_id)
        return JSONResponse(
            {"key": info.as_dict(), "applies_within_s": keyed.base.routing.key_sync_interval_s}
        )

    @router.delete("/admin/providers/{name}/key", responses=answers(None))
    async def remove_provider_key(request: Request, name: str) -> Response:
        await gate(request, "providers.write", action="providers.remove_key")
        keys = provider_store(request, name)
        if not await asyncio.to_thread(keys.remove, name):
            raise NotFound(f"No key was set at run time for provider {name!r}.", param="name")
        return JSONResponse(
            {"removed": name, "applies_within_s": keyed.base.routing.key_sync_interval_s}
        )

    return router
