"""Policy engine, first part: PII and secret detection, redaction, jailbreak scoring.

Plain Python (stdlib ``re`` and ``ipaddress``); nothing here imports Ray.
"""

from gateway.policy.detection import ALL_TYPES, CREDENTIAL_TYPES, PII_TYPES, detect
from gateway.policy.jailbreak import (
    JailbreakScore,
    JailbreakScorer,
    JailbreakSignal,
    RuleMatch,
    score,
)
from gateway.policy.redaction import Redacted, redact, restore
from gateway.policy.spans import Span, resolve_overlaps

__all__ = [
    "ALL_TYPES",
    "CREDENTIAL_TYPES",
    "PII_TYPES",
    "JailbreakScore",
    "JailbreakScorer",
    "JailbreakSignal",
    "Redacted",
    "RuleMatch",
    "Span",
    "detect",
    "redact",
    "resolve_overlaps",
    "restore",
    "score",
]
