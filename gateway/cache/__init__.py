"""Semantic cache: exact, normalised and embedding-similarity answers to repeated requests."""

from gateway.cache.cache import CacheStats, Hit, SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.index import Candidate, SemanticIndex
from gateway.cache.keys import exact_key, scope_key, semantic_eligibility, signature
from gateway.cache.verify import Verdict, verify_candidate

__all__ = [
    "CacheConfig",
    "CacheStats",
    "Candidate",
    "Hit",
    "SemanticCache",
    "SemanticIndex",
    "Verdict",
    "exact_key",
    "scope_key",
    "semantic_eligibility",
    "signature",
    "verify_candidate",
]
