"""The trail over time, for the console's overview: per time bucket, the requests to the model
API (`/v1/...`; admin actions and pre-cached follow-ups left out), their errors, tokens, cost,
the cost the cache avoided, cache hits and lookups, and latency (mean, p50, p95).

A bucket is a prefix of the stored timestamp (fixed-width UTC text, `2025-03-01T12:34:56.…Z`):
a minute is its first 16 characters, so `GROUP BY substr(ts, 1, 16)` reads the same on SQLite
and PostgreSQL, and every bucket starts on a whole multiple of its width since the epoch.
Percentiles come from a latency histogram: the database counts each bucket's records per
latency band, with the band's smallest and largest value, and the percentile is interpolated
inside the band that holds its rank (exact where the band holds one value). The database
answers at most buckets x bands rows, however much traffic there was.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from gateway.audit.query import AuditFilter
from gateway.audit.record import Timestamp, as_utc
from gateway.audit.store import AuditStore

Bucket = Literal["10s", "1m", "10m", "1h", "1d"]
BUCKETS: tuple[Bucket, ...] = ("10s", "1m", "10m", "1h", "1d")
BUCKET_SECONDS: dict[Bucket, int] = {"10s": 10, "1m": 60, "10m": 600, "1h": 3600, "1d": 86400}
MAX_BUCKETS = 1500
DEFAULT_BUCKETS = 60  # the window when `since` is not given: this many buckets before `until`

# The timestamp prefix of each bucket width, and what completes a prefix to its bucket's start.
_PREFIX: dict[Bucket, int] = {"10s": 18, "1m": 16, "10m": 15, "1h": 13, "1d": 10}
_START = "0000-01-01T00:00:00"
# Upper edges of the latency bands, in milliseconds (roughly 1-2-3-5-7 per decade).
_BAND_EDGES_MS = (
    *(1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700),
    *(1000, 1500, 2000, 3000, 5000, 7000, 10000, 15000, 20000, 30000, 60000),
)
_BAND = (
    "CASE WHEN r.latency_ms IS NULL THEN -1 "
    + " ".join(f"WHEN r.latency_ms < {edge} THEN {n}" for n, edge in enumerate(_BAND_EDGES_MS))
    + f" ELSE {len(_BAND_EDGES_MS)} END"
)


class SeriesPoint(BaseModel):
    """One bucket: the model API's requests that arrived in [start, start + bucket_s)."""

    start: Timestamp
    requests: int = 0
    errors: int = Field(0, description="requests answered with a status of 400 or more")
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cost_avoided_usd: float = Field(0.0, description="what the cache's hits would have cost")
    cache_hits: int = 0
    cache_lookups: int = Field(0, description="hits and misses (bypassed requests excluded)")
    latency_mean_ms: float | None = None
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None


class TimeSeries(BaseModel):
    """Every bucket from the one holding `since` to the one holding `until`, empty ones too."""

    bucket: Bucket
    bucket_s: int
    since: Timestamp
    until: Timestamp
    points: list[SeriesPoint]


class _Band(NamedTuple):
    """The latencies of one band in one bucket: how many, the smallest and the largest."""

    size: int
    low: float
    high: float


def timeseries(store: AuditStore, where: AuditFilter, bucket: Bucket, now: datetime) -> TimeSeries:
    """The records matching `where` per `bucket`, from `where.since` (default: 60 buckets
    before the end) to `where.until` (default: `now`).

    Raises ValueError, starting with `bucket:`, when the window holds over `MAX_BUCKETS`.
    """
    width = BUCKET_SECONDS[bucket]
    until = where.until or as_utc(now)
    since = where.since or until - timedelta(seconds=width * DEFAULT_BUCKETS)
    first = math.floor(since.timestamp() / width) * width
    count = max(0, math.ceil((until.timestamp() - first) / width))
    if count > MAX_BUCKETS:
        raise ValueError(
            f"bucket: {count} buckets of {bucket} from since to until; at most {MAX_BUCKETS}: "
            "choose a wider bucket or a shorter window"
        )
    points = [
        SeriesPoint(start=datetime.fromtimestamp(first + n * width, UTC)) for n in range(count)
    ]
    bands: dict[int, dict[int, _Band]] = defaultdict(dict)
    latency_sums: dict[int, float] = defaultdict(float)
    for row in _rows(store, where.model_copy(update={"since": since, "until": until}), bucket):
        prefix, band, n, errors, t_in, t_out, cost, avoided, hits, misses = row[:10]
        timed, latency_sum, low, high = row[10:]
        start = datetime.strptime(str(prefix) + _START[len(prefix) :], "%Y-%m-%dT%H:%M:%S")
        index = int((start.replace(tzinfo=UTC).timestamp() - first) // width)
        point = points[index]
        # PostgreSQL sums BIGINT as NUMERIC (a Decimal here): normalise the types.
        point.requests += int(n)
        point.errors += int(errors)
        point.tokens_in += int(t_in)
        point.tokens_out += int(t_out)
        point.cost_usd += float(cost)
        point.cost_avoided_usd += float(avoided)
        point.cache_hits += int(hits)
        point.cache_lookups += int(hits) + int(misses)
        if int(timed):
            bands[index][int(band)] = _Band(int(timed), float(low), float(high))
            latency_sums[index] += float(latency_sum)
    for index, histogram in bands.items():
        point = points[index]
        timed = sum(b.size for b in histogram.values())
        point.latency_mean_ms = latency_sums[index] / timed
        point.latency_p50_ms = _percentile(histogram, timed, 0.50)
        point.latency_p95_ms = _percentile(histogram, timed, 0.95)
    return TimeSeries(bucket=bucket, bucket_s=width, since=since, until=until, points=points)


def _rows(store: AuditStore, where: AuditFilter, bucket: Bucket) -> list[tuple[Any, ...]]:
    condition, params = where.where()
    return store.db.fetchall(
        f"SELECT substr(r.ts, 1, {_PREFIX[bucket]}), {_BAND}, COUNT(*), "
        "SUM(CASE WHEN r.status >= 400 THEN 1 ELSE 0 END), "
        "COALESCE(SUM(r.tokens_in), 0), COALESCE(SUM(r.tokens_out), 0), "
        "COALESCE(SUM(r.cost_usd), 0), COALESCE(SUM(r.cost_avoided_usd), 0), "
        "SUM(CASE WHEN r.cache_phase IN ('exact', 'normalized', 'semantic') THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN r.cache_phase = 'miss' THEN 1 ELSE 0 END), "
        "COUNT(r.latency_ms), COALESCE(SUM(r.latency_ms), 0), "
        "MIN(r.latency_ms), MAX(r.latency_ms) "
        f"FROM audit_records r WHERE {condition} "
        "AND substr(r.route, 1, 4) = '/v1/' AND r.admin_action IS NULL GROUP BY 1, 2",
        params,
    )


def _percentile(histogram: dict[int, _Band], count: int, q: float) -> float:
    """The q-quantile of `count` latencies, linear between the closest ranks (numpy's
    default); each rank's latency is estimated inside its band, evenly spread from the band's
    smallest to its largest (exact for a band of one or two)."""
    rank = q * (count - 1)
    low = _latency_at(histogram, math.floor(rank))
    high = _latency_at(histogram, math.ceil(rank))
    return low + (rank - math.floor(rank)) * (high - low)


def _latency_at(histogram: dict[int, _Band], rank: int) -> float:
    below = 0
    for band in (histogram[n] for n in sorted(histogram)):
        if rank < below + band.size:
            if band.size == 1:
                return band.low
            return band.low + (rank - below) / (band.size - 1) * (band.high - band.low)
        below += band.size
    raise ValueError(f"rank {rank} is past the last latency")
