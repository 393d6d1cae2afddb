"""Policy engine: PII, PHI and secret detection (patterns, and a spaCy NER for names, on
normalised text), redaction, jailbreak scoring (patterns, a learned classifier on the request
embedding, embedding similarity), indirect-injection scoring, topic rules, model and
max_tokens limits, output filtering.

Plain Python (stdlib ``re``, numpy; spaCy only for profiles that name entity types); nothing
here imports Ray, and nothing embeds: embeddings come from outside (see
``gateway.policy.engine``).
"""

from gateway.policy.classifier import JailbreakClassifier
from gateway.policy.detection import ALL_TYPES, CREDENTIAL_TYPES, PHI_TYPES, PII_TYPES, detect
from gateway.policy.engine import PolicyEngine
from gateway.policy.entities import ENTITY_TYPES, EntityRecognizer, NerUnavailable
from gateway.policy.injection import InjectionVerdict
from gateway.policy.jailbreak import (
    JailbreakScore,
    JailbreakScorer,
    JailbreakSignal,
    RuleMatch,
    score,
)
from gateway.policy.normalize import Normalized, normalize
from gateway.policy.redaction import Redacted, redact, restore
from gateway.policy.similarity import SimilaritySignal, load_corpus
from gateway.policy.spans import Span, resolve_overlaps
from gateway.policy.topics import TopicIndex, TopicScore, load_topics
from gateway.policy.verdict import Verdict

__all__ = [
    "ALL_TYPES",
    "CREDENTIAL_TYPES",
    "ENTITY_TYPES",
    "PHI_TYPES",
    "PII_TYPES",
    "EntityRecognizer",
    "InjectionVerdict",
    "JailbreakClassifier",
    "JailbreakScore",
    "JailbreakScorer",
    "JailbreakSignal",
    "NerUnavailable",
    "Normalized",
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
    "normalize",
    "redact",
    "resolve_overlaps",
    "restore",
    "score",
]
