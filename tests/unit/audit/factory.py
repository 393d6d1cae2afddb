"""Records for tests: varied enough that every column and side table is exercised."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.audit import AuditPrincipal, AuditRecord, PolicyDecision

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def make_record(n: int = 0, **overrides: Any) -> AuditRecord:
    """The n-th of a family of records: users, departments, groups and topics cycle with n."""
    user = f"user{n % 3}"
    fields: dict[str, Any] = {
        "ts": T0 + timedelta(minutes=n),
        "request_id": f"req_{n}",
        "principal": AuditPrincipal(
            user_id=user,
            auth_method="api_key",
            email=f"{user}@example.org",
            department=("finance", "eng")[n % 2],
            groups=["staff", ("analysts", "builders")[n % 2]],
            roles=["member"],
        ),
        "client_address": "10.0.0.7",
        "route": "/v1/chat/completions",
        "model_requested": ("sim-small", "sim-large")[n % 2],
        "route_taken": "simulator/sim-secondary; tried=simulator/sim-primary:503",
        "cache_phase": "miss",
        "similarity": 0.5 + n / 1000,
        "decisions": [
            PolicyDecision(
                rule="pii",
                detector="regex",
                action=("redact", "block")[n % 2],
                span_types=["EMAIL"],
                topic=None,
            )
        ],
        "topics": [("taxes", "payroll", "weather")[n % 3]],
        "tokens_in": 10 + n,
        "tokens_out": 20 + n,
        "cost_usd": 0.001 * (n + 1),
        "latency_ms": 12.5,
        "status": 200,
        "prompt_mode": "full",
        "prompt": f"prompt {n} — ünïcode",
        "response_mode": "hash",
        "response": "0" * 64,
    }
    fields.update(overrides)
    return AuditRecord(**fields)


def make_records(count: int, start: int = 0) -> list[AuditRecord]:
    """`count` records, n = start .. start+count-1."""
    return [make_record(n) for n in range(start, start + count)]
