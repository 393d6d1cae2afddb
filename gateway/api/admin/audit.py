"""Admin API over the audit trail, under `/admin/audit` (admin credentials only).

GET  /admin/audit/records   records, newest first; filters as below, `limit` (<= 1000) and
                            `cursor` (the `next_cursor` of the page before)
GET  /admin/audit/summary   counts, token and cost totals `by` department|topic|user|model|
                            group|action
GET  /admin/audit/export    the matching records as `format=csv|json`, oldest first, streamed
GET  /admin/audit/timeseries requests, errors, tokens, cost, cost avoided, cache hits and
                            latency (mean, p50, p95) per `bucket` (10s|1m|10m|1h|1d), the
                            model API's requests only; since defaults to 60 buckets ago
POST /admin/audit/verify    walk the chain; optional body {"expected_head": {"seq", "hash"}}

Filters: user, department, group, topic, action, model, since, until (ISO date or date-time,
or an age such as 7d). An unknown parameter is a 400, not a silently wider answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.api.admin import AdminGate
from gateway.api.errors import invalid_body, validated
from gateway.api.openapi import answers, request_body
from gateway.audit.export import MEDIA_TYPES, ExportFormat, export_chunks
from gateway.audit.query import (
    FILTER_FIELDS,
    GROUP_BY,
    AuditFilter,
    list_records,
    summarize,
)
from gateway.audit.record import utc_now
from gateway.audit.store import AuditStore, ChainPoint
from gateway.audit.timeseries import BUCKETS, TimeSeries, timeseries
from gateway.audit.verify import verify
from gateway.errors import InvalidRequest

MAX_PAGE = 1000

# The export streams records as a JSON array or as CSV, per `format`.
_EXPORT_ANSWERS = answers(None) | {
    200: {
        "description": "the matching records, oldest first",
        "content": {
            "application/json": {"schema": {"type": "array", "items": {"type": "object"}}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}
_Choice = TypeVar("_Choice", bound=str)


class VerifyRequest(BaseModel):
    """Body of `POST /admin/audit/verify`."""

    model_config = ConfigDict(extra="forbid")

    expected_head: ChainPoint | None = None


def audit_routes(
    gate: AdminGate,
    store: AuditStore,
    *,
    clock: Callable[[], datetime] = utc_now,
) -> APIRouter:
    """The audit routes, for auditors and admins (reading the trail is itself audited)."""
    router = APIRouter()

    async def admitted(request: Request, action: str, *extra: str) -> AuditFilter:
        """The caller's filter, once the caller is known to be an auditor or admin."""
        await gate(request, "audit.read", action=action)
        return _filter(request, clock(), extra)

    @router.get("/admin/audit/records", responses=answers(None))
    async def audit_records(request: Request) -> Response:
        where = await admitted(request, "audit.query", "limit", "cursor")
        limit = _limit(request.query_params.get("limit"))
        cursor = request.query_params.get("cursor")
        try:
            page = await asyncio.to_thread(list_records, store, where, limit=limit, cursor=cursor)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="cursor") from None
        return JSONResponse(page.model_dump(mode="json"))

    @router.get("/admin/audit/summary", responses=answers(None))
    async def audit_summary(request: Request) -> Response:
        where = await admitted(request, "audit.summary", "by")
        by = _choice(request.query_params.get("by", "department"), GROUP_BY, "by")
        rows = await asyncio.to_thread(summarize, store, where, by)
        return JSONResponse({"by": by, "rows": [r.model_dump(mode="json") for r in rows]})

    @router.get("/admin/audit/timeseries", responses=answers(TimeSeries))
    async def audit_timeseries(request: Request) -> Response:
        where = await admitted(request, "audit.timeseries", "bucket")
        bucket = _choice(request.query_params.get("bucket", "1m"), BUCKETS, "bucket")
        try:
            series = await asyncio.to_thread(timeseries, store, where, bucket, clock())
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="bucket") from None
        return JSONResponse(series.model_dump(mode="json"))

    @router.get("/admin/audit/export", responses=_EXPORT_ANSWERS)
    async def audit_export(request: Request) -> Response:
        where = await admitted(request, "audit.export", "format")
        formats: tuple[ExportFormat, ...] = ("csv", "json")
        fmt = _choice(request.query_params.get("format", "json"), formats, "format")
        return StreamingResponse(
            _in_thread(export_chunks(store, where, fmt)),
            media_type=MEDIA_TYPES[fmt],
            headers={"content-disposition": f'attachment; filename="audit.{fmt}"'},
        )

    @router.post(
        "/admin/audit/verify",
        openapi_extra=request_body(VerifyRequest, required=False),
        responses=answers(None),
    )
    async def audit_verify(request: Request) -> Response:
        await admitted(request, "audit.verify")
        raw = await request.body()
        body = validated(VerifyRequest, raw, empty=True)
        report = await asyncio.to_thread(verify, store, expected_head=body.expected_head)
        return JSONResponse(report.model_dump(mode="json"))

    return router


def _filter(request: Request, now: datetime, extra: tuple[str, ...]) -> AuditFilter:
    unknown = sorted(set(request.query_params) - set(FILTER_FIELDS) - set(extra))
    if unknown:
        raise InvalidRequest(
            f"Unknown parameter {unknown[0]!r}; known: {', '.join((*FILTER_FIELDS, *extra))}.",
            param=unknown[0],
        )
    values = {name: request.query_params.get(name) for name in FILTER_FIELDS}
    try:
        return AuditFilter.parse(values, now)
    except ValidationError as exc:
        raise invalid_body(exc) from None
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=str(exc).split(":", 1)[0]) from None


def _limit(text: str | None) -> int:
    if text is None:
        return 100
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}.", param="limit")
    return int(text)


def _choice(value: str, allowed: tuple[_Choice, ...], name: str) -> _Choice:
    for option in allowed:
        if value == option:
            return option
    raise InvalidRequest(f"{name} must be one of {', '.join(allowed)}.", param=name)


async def _in_thread(chunks: Iterator[str]) -> AsyncIterator[str]:
    # Each page is read by a worker thread, so a large export never blocks the event loop.
    done = object()
    while (chunk := await asyncio.to_thread(next, chunks, done)) is not done:
        yield str(chunk)
