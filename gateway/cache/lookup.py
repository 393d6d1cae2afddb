"""What travels between the API and a cache replica: queries, results, new entries and
invalidation selectors. Plain data (numpy arrays at most), cheap to import and to pickle
across a Serve handle; the FAISS side lives in `cache.py` / `index.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Phase = Literal["exact", "normalized", "semantic"]


@dataclass(frozen=True)
class Hit:
    """A cached answer found for a request, by which phase and how close."""

    entry_id: int
    response: str
    phase: Phase
    similarity: float
    cached_text: str
    created_at: float = 0.0  # when the entry was stored (0: not said)


@dataclass(frozen=True)
class CacheQuery:
    """One request's lookup: its scope, the text keyed on, and how the semantic phase runs.

    `embedding` is the request's embedding when the caller already has it (the policy
    engine's); the semantic phase then does not compute it again.
    """

    scope: str
    text: str
    eligible: bool = True
    threshold: float | None = None
    embedding: np.ndarray | None = None
    context: str = ""  # earlier user turns of a conversation, most recent first
    exact_only: bool = False  # the exact phase alone, on the raw text
    model: str = ""  # the alias, whose lookups the learned phase's error budget counts
    # The caller answers an exploration fresh and calls `observe` (the learned phase checks
    # candidates only for such callers; to others it serves or misses).
    explore: bool = False


@dataclass(frozen=True)
class Exploration:
    """A semantic candidate the cache chose to check rather than serve.

    The request is answered fresh; after the answer went to the client, the request path
    passes this back with the fresh answer (`CacheService.observe`), which compares it with
    the candidate's stored answer and learns from the outcome. `shadow` is True when the
    candidate would have been served (the fresh call is spend a hit would have saved),
    False when it was not confident enough to serve (the call was needed anyway). `risk` is
    the estimated chance that serving it would have been wrong, `chance` the probability
    with which a shadow was drawn (its observation stands for 1 / chance served candidates).
    """

    entry_id: int
    similarity: float
    scope: str
    text: str
    context: str
    model: str
    shadow: bool
    risk: float
    chance: float = 1.0  # the probability with which a shadow was drawn
    margin: float | None = None  # its lead over the nearest other answer (`Learner.margin`)
    repeat: bool = False  # a shadow of a question served before and asked again
    answer: str = ""  # the candidate's stored response, for a judge (`cache.judge`)


@dataclass(frozen=True)
class Observation:
    """What `observe` concluded: whether the fresh answer agreed with the stored one.

    `equivalent` is None when nothing was compared (the entry is gone); `method` says which
    comparison decided (exact, embedding, facts, judge); `tokens` the fresh call's cost as
    counted towards exploration spend.
    """

    entry_id: int
    similarity: float
    equivalent: bool | None
    method: str
    reason: str
    shadow: bool
    tokens: int = 0
    answer_similarity: float | None = None


@dataclass(frozen=True)
class CacheResult:
    """What a lookup found: the hit (None on a miss), the best similarity seen, whether
    verification refused a candidate, and the request's embedding if it was computed.

    `explore` is set (and `hit` None) when the cache chose to check its best candidate
    against a fresh answer: answer the request upstream, then call `observe`.
    """

    hit: Hit | None
    similarity: float
    rejected: bool = False
    embedding: np.ndarray | None = None
    replica: str | None = None  # the cache replica that answered, where there are several
    explore: Exploration | None = None
    applied: int = 0  # the entry log's seq the answering replica had applied

    @property
    def phase(self) -> Phase | Literal["miss"]:
        return self.hit.phase if self.hit is not None else "miss"


@dataclass(frozen=True)
class NewEntry:
    """An answer to store: the scope and text it answers, the model alias (for invalidation
    by model), the serialised answer, and the text's embedding when already known."""

    scope: str
    text: str
    model: str
    response: str
    embedding: np.ndarray | None = None
    context: str = ""  # earlier user turns of a conversation, most recent first
    exact_only: bool = False  # found by the exact phase alone (no vector is stored)


@dataclass(frozen=True)
class NearbyHits:
    """Exact hits an ingress replica answered from its near cache since its last report:
    lookups per (alias, kind), those of exact-only routes (which the learned phase does not
    count), and the entries they used. A cache replica counts them as its own exact hits."""

    lookups: tuple[tuple[str, str, int], ...]
    entry_ids: tuple[int, ...]
    exact_only: int = 0

    @property
    def count(self) -> int:
        return sum(n for _, _, n in self.lookups) + self.exact_only


@dataclass(frozen=True)
class Selector:
    """Which entries an invalidation removes: any combination, all given must match."""

    entry_ids: tuple[int, ...] = ()
    scope: str | None = None
    model: str | None = None
    created_before: float | None = None

    def empty(self) -> bool:
        return not (self.entry_ids or self.scope or self.model) and self.created_before is None
