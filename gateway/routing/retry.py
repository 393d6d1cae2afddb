"""When a failed call may be tried again, after how long, and when it may go elsewhere.

Retryable (the same target may be called again after a backoff, and the next target is tried
at once): connect errors, 429, 500, 502, 503, 504 and first-token / total timeouts, i.e.
`gateway.errors.is_retryable`.

Not retryable, never sent to the same target twice: 400/422 (`invalid_request`), parameters a
provider does not take (`unsupported_parameter`), 401/403/404 from the upstream, relayed as
502 (`upstream_rejected`), 413 (`payload_too_large`), and a whole answer that stopped with
`finish_reason: content_filter` or an upstream's content-filter error (`content_filter`). An
alias may still pass these on to its next target by naming them in `fallback_on`.
"""

from __future__ import annotations

import math
import random
import time
from email.utils import parsedate_to_datetime

from gateway.errors import (
    ContentFiltered,
    GatewayError,
    InvalidRequest,
    PayloadTooLarge,
    UnsupportedParameter,
    UpstreamRejected,
)
from gateway.routing.config import FallbackReason, RetryPolicy


class Backoff:
    """Exponential backoff with full jitter (the AWS architecture blog's "Full Jitter").

    The wait before retry round n (0-based) is uniform in [0, min(max_delay, base * 2**n)]:
    spreading retries over the whole interval keeps many clients from retrying in step.
    """

    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry round `retry` (0 for the first retry)."""
        ceiling = min(self._policy.max_delay, self._policy.base_delay * 2.0**retry)
        return self._rng.uniform(0.0, ceiling)


def retry_after_s(error: GatewayError, *, now_epoch: float | None = None) -> float | None:
    """The upstream's Retry-After on this error, in seconds (delta-seconds or HTTP date)."""
    value = error.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now_epoch is None else now_epoch)
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def fallback_reason(error: GatewayError) -> FallbackReason | None:
    """The `fallback_on` name of a non-retryable failure, or None for one no alias may pass on."""
    if isinstance(error, ContentFiltered):
        return "content_filter"
    if isinstance(error, UnsupportedParameter):
        return "unsupported_parameter"
    if isinstance(error, InvalidRequest):
        return "invalid_request"
    if isinstance(error, UpstreamRejected):
        return "upstream_rejected"
    if isinstance(error, PayloadTooLarge):
        return "payload_too_large"
    return None
