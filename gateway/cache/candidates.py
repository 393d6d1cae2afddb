"""What the semantic phase works with: candidates, their partitions, vectors and vetoes.

Plain pieces of the semantic phase shared by `SemanticCache` and its callers: the result of a
semantic lookup, a stored neighbour, the index partition of a scope (single questions and
conversations apart), the vector a conversation is indexed by, the counters, and the vetoes
applied to a candidate (its last turn and, for a conversation, its context).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gateway.cache.learning import Kind
from gateway.cache.lookup import Exploration, Hit, Phase
from gateway.cache.store import Entry
from gateway.cache.verify import verify_candidate

PHASES: tuple[Phase, ...] = ("exact", "normalized", "semantic")


@dataclass(frozen=True)
class SemanticResult:
    """Phases 3 and 4 for one request: the hit if any, the best similarity seen, whether
    verification refused a candidate, and the exploration when the candidate is checked."""

    hit: Hit | None
    similarity: float
    rejected: bool
    explore: Exploration | None = None


@dataclass(frozen=True)
class Neighbour:
    """A stored entry near another one, its similarity, and that the vetoes let it pass."""

    entry: Entry
    similarity: float


@dataclass
class CacheStats:
    """Counters since start: hits per phase, misses, refusals, and the learned phase's
    explorations (shadow: a would-be hit answered fresh; observed: a miss compared)."""

    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PHASES, 0))
    misses: int = 0
    rejected_by_verification: int = 0
    ineligible: int = 0
    evicted: int = 0
    expired: int = 0
    learned_hits: int = 0  # semantic hits below the static threshold
    explored: dict[str, int] = field(default_factory=lambda: {"shadow": 0, "observed": 0})


def partition(scope: str, context: str) -> str:
    """The index partition of a scope: single questions and conversations never meet."""
    return f"{scope}\x00conversation" if context else scope


def index_vector(turn: np.ndarray, context: np.ndarray | None) -> np.ndarray:
    """What a conversation is indexed by: the normalised sum of its two vectors (candidates
    are then ranked by the lower of the two similarities)."""
    if context is None:
        return turn
    both = np.asarray(turn, dtype=np.float32) + np.asarray(context, dtype=np.float32)
    return both / max(float(np.linalg.norm(both)), 1e-12)


def facts_agree(request_text: str, context: str, entry: Entry) -> bool:
    """The vetoes (phase 4) pass for `entry` as an answer to this request."""
    if not verify_candidate(request_text, entry.text).accepted:
        return False
    return not context or verify_candidate(context, entry.context).accepted


def half(vector: np.ndarray | None) -> np.ndarray | None:
    """A half-precision copy (entries keep their extra vectors so)."""
    return None if vector is None else np.asarray(vector, dtype=np.float16)


def kind_of(context: str) -> Kind:
    """Single question or conversation: the learned phase keeps them apart."""
    return "conversation" if context else "single"
