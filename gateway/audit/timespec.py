"""Times as people type them on a command line or in a query string: `90d`, `2025-01-31`."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from gateway.audit.record import as_utc

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_age(text: str) -> timedelta:
    """`45s`, `30m`, `12h`, `90d`, `2w` as a duration; ValueError otherwise."""
    match = _AGE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r}: expected an age like 90d, 12h, 30m, 45s or 2w")
    return timedelta(**{_UNIT[match.group(2)]: float(match.group(1))})


def parse_instant(text: str, now: datetime) -> datetime:
    """An ISO date or date-time (UTC unless it says otherwise), or an age before `now`."""
    text = text.strip()
    if _AGE.match(text):
        return as_utc(now) - parse_age(text)
    try:
        return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(
            f"{text!r}: expected an ISO date (2025-01-31), a date-time "
            "(2025-01-31T12:00:00Z) or an age before now (7d)"
        ) from None
