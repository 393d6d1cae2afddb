"""Exports of the trail for auditors and spreadsheets: CSV or JSON, streamed a page at a time.

Both carry `seq`, `prev_hash` and `hash`, so an exported chain can be checked against the
database (or re-linked offline) later. CSV has one column per stored column, lists as JSON.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Literal, TextIO

from gateway.audit import schema
from gateway.audit.query import AuditFilter, iter_records
from gateway.audit.store import AuditStore
from gateway.progress import Progress, reported

ExportFormat = Literal["csv", "json"]

MEDIA_TYPES: dict[str, str] = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def export_chunks(
    store: AuditStore,
    where: AuditFilter,
    fmt: ExportFormat,
    *,
    page_size: int = 1000,
    progress: Progress | None = None,
) -> Iterator[str]:
    """The export as text chunks, oldest record first; `progress` is told each record
    written."""
    records = iter_records(store, where, page_size=page_size)
    if progress is not None:
        records = reported(records, progress)
    if fmt == "json":
        yield "["
        for n, record in enumerate(records):
            yield ("\n" if n == 0 else ",\n") + record.model_dump_json()
        yield "\n]\n"
        return
    buffer = io.StringIO()
    out = csv.writer(buffer, lineterminator="\n")
    out.writerow(schema.COLUMNS)
    for n, record in enumerate(records, start=1):
        out.writerow(["" if v is None else v for v in schema.to_row(record)])
        if n % page_size == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def write_export(
    store: AuditStore,
    where: AuditFilter,
    fmt: ExportFormat,
    out: TextIO,
    *,
    progress: Progress | None = None,
) -> None:
    """Write the export to an open text file."""
    for chunk in export_chunks(store, where, fmt, progress=progress):
        out.write(chunk)
