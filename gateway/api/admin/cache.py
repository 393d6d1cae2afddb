"""Admin API over the semantic cache, under `/admin/cache` (admin credentials only).

GET    /admin/cache                 one cache replica's counters and size
GET    /admin/cache/entries         entries, newest first (?limit, ?before=<id>, ?model), their
                                    texts shown as the audit trail keeps prompts and answers
POST   /admin/cache/invalidate      {"ids"?, "scope"?, "model"?, "older_than_s"?}: every
                                    replica drops the selected entries within one sync interval
DELETE /admin/cache/entries/{id}    one entry
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.api.admin import AdminGate
from gateway.api.caching import CacheBackend
from gateway.api.errors import invalid_body, validated
from gateway.api.openapi import answers, request_body
from gateway.cache.browse import CacheBrowser, EntryPage
from gateway.cache.lookup import Selector
from gateway.errors import InvalidRequest

# An entry id is a row id of the entry log: a positive 64-bit integer.
EntryId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class Invalidation(BaseModel):
    """Body of `POST /admin/cache/invalidate`: all given criteria must match."""

    model_config = ConfigDict(extra="forbid")

    ids: list[EntryId] = Field(default_factory=list, description="entry ids")
    scope: str | None = Field(None, description="a scope hash (from the entry)")
    model: str | None = Field(None, description="a model alias: every entry answering it")
    older_than_s: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="entries at least this old"
    )

    def selector(self, now: float) -> Selector:
        if not (self.ids or self.scope or self.model) and self.older_than_s is None:
            raise InvalidRequest(
                "Say which entries to invalidate: ids, scope, model and/or older_than_s."
            )
        before = now - self.older_than_s if self.older_than_s is not None else None
        return Selector(tuple(self.ids), self.scope, self.model, before)


class EntryQuery(BaseModel):
    """The query of `GET /admin/cache/entries`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(50, ge=1, le=500)
    before: EntryId | None = Field(None, description="the next_before of the page before")
    model: str | None = None


def cache_routes(
    gate: AdminGate,
    cache: CacheBackend,
    browser: CacheBrowser | None = None,
    *,
    clock: Callable[[], float] = time.time,
) -> APIRouter:
    """The cache routes: counters for whoever reads reports, the entries (`browser`: none
    without the gateway's database) for whoever reads the audit trail, invalidation for
    admins."""
    router = APIRouter()

    @router.get("/admin/cache", responses=answers(None))
    async def cache_stats(request: Request) -> Response:
        await gate(request, "reports.read", action="cache.stats")
        return JSONResponse(await cache.stats())

    @router.get("/admin/cache/entries", responses=answers(EntryPage))
    async def cache_entries(request: Request) -> Response:
        await gate(request, "audit.read", action="cache.entries")
        try:
            query = EntryQuery.model_validate(dict(request.query_params))
        except ValidationError as exc:
            raise invalid_body(exc) from None
        if browser is None:
            raise InvalidRequest(
                "Browsing the cache needs the gateway's database (storage.url).",
                code="cache_browser_unavailable",
            )
        page = await asyncio.to_thread(
            browser.page, query.limit, before=query.before, model=query.model
        )
        return JSONResponse(page.model_dump(mode="json"))

    @router.post(
        "/admin/cache/invalidate",
        openapi_extra=request_body(Invalidation),
        responses=answers(None),
    )
    async def cache_invalidate(request: Request) -> Response:
        await gate(request, "cache.write", action="cache.invalidate")
        body = validated(Invalidation, await request.body())
        count = await cache.invalidate(body.selector(clock()))
        return JSONResponse({"invalidated": count})

    @router.delete("/admin/cache/entries/{entry_id}", responses=answers(None))
    async def cache_delete(
        request: Request, entry_id: Annotated[int, Path(ge=1, le=2**63 - 1)]
    ) -> Response:
        await gate(request, "cache.write", action="cache.delete", target=f"cache:{entry_id}")
        count = await cache.invalidate(Selector(entry_ids=(entry_id,)))
        return JSONResponse({"invalidated": count})

    return router
