"""Policy engine: PII and secret detection, redaction, jailbreak scoring (patterns and
embedding similarity), topic rules, model and max_tokens limits, output filtering.

Plain Python (stdlib ``re``, numpy); nothing here imports Ray or loads a model: embeddings
come from outside (see ``gateway.policy.engine``).
"""

from gateway.policy.detection import ALL_TYPES, CREDENTIAL_TYPES, PII_TYPES, detect
from gateway.policy.engine import PolicyEngine
from gateway.policy.jailbreak import (
    JailbreakScore,
    JailbreakScorer,
    JailbreakSignal,
    RuleMatch,
    score,
)
from gateway.policy.redaction import Redacted, redact, restore
from gateway.policy.similarity import SimilaritySignal, load_corpus
from gateway.policy.spans import Span, resolve_overlaps
from gateway.policy.topics import TopicIndex, TopicScore, load_topics
from gateway.policy.verdict import Verdict

__all__ = [
    "ALL_TYPES",
    "CREDENTIAL_TYPES",
    "PII_TYPES",
    "JailbreakScore",
    "JailbreakScorer",
    "JailbreakSignal",
    "PolicyEngine",
    "Redacted",
    "RuleMatch",
    "SimilaritySignal",
    "Span",
    "TopicIndex",
    "TopicScore",
    "Verdict",
    "detect",
    "load_corpus",
    "load_topics",
    "redact",
    "resolve_overlaps",
    "restore",
    "score",
]
