"""Predictive pre-caching: which follow-up questions tend to come after an exchange.

The entry log already records what followed what: a conversation entry holds its earlier user
turns (`context`) and the follow-up asked after them (`text`). After the gateway answered a
request, the conversations of its follow-up scope whose context means the same as the
exchange just answered (context cosine >= `precache.context_similarity`, facts agreeing) are
the follow-ups other people asked next. Grouped by neighbourhood (entries whose answers agree
are one follow-up), counted in stored conversations, the frequent ones (`min_support`,
`min_share`) that would not already be answered from the cache are worth answering in the
background before they are asked, within `max_follow_ups` per answer and `budget_per_hour`.
The request path does the generation (low priority) and stores the answer like any other.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from gateway.cache.cache import SemanticCache
from gateway.cache.store import Entry
from gateway.cache.verify import verify_candidate


@dataclass(frozen=True)
class FollowUp:
    """A question that tends to follow an exchange, worth answering before it is asked.

    Ask it as the next user turn after the exchange (the request's messages, then the answer
    given, then `text`); its answer is stored under `scope` with `context` like any answer.
    `support` is how many stored conversations asked it there, `share` their share of all
    follow-ups stored after that exchange.
    """

    text: str
    context: str
    scope: str
    support: int
    share: float


def suggest_follow_ups(
    cache: SemanticCache,
    *,
    follow_up_scope: str,
    context: str,
    context_vector: np.ndarray,
) -> list[FollowUp]:
    """Follow-ups of the exchange whose user turns are `context` (most recent first), from
    the conversations stored under `follow_up_scope`, most supported first; none that the
    cache would already answer after this exchange (pre-answering it would buy nothing)."""
    config = cache.config.precache

    def already_served(entry: Entry) -> bool:
        if entry.context_vector is None:
            return False
        similarity = float(np.dot(context_vector, entry.context_vector.astype(np.float32)))
        static = cache.config.threshold_for(entry.model)
        bound = cache.config.max_error_rate_for(entry.model)
        if bound is None:
            return similarity >= static
        # The same follow-up after this context: its similarity is the context's.
        risk = cache.learner.risk(
            entry.entry_id,
            similarity,
            static_threshold=static,
            bound=bound,
            context_similarity=similarity,
        )
        return risk <= bound

    matched: list[Entry] = []
    for entry in cache.conversations(follow_up_scope):
        if entry.context_vector is None:
            continue
        similarity = float(np.dot(context_vector, entry.context_vector.astype(np.float32)))
        if (
            similarity >= config.context_similarity
            and verify_candidate(context, entry.context).accepted
        ):
            matched.append(entry)
    if not matched:
        return []
    # One follow-up per neighbourhood (agreeing answers); each stored conversation counts once.
    groups: dict[int, list[Entry]] = {}
    for entry in matched:
        group = cache.learner.neighbourhood(entry.entry_id)
        groups.setdefault(entry.entry_id if group is None else group, []).append(entry)
    support = {g: len(members) for g, members in groups.items()}
    total = sum(support.values())
    chosen: list[FollowUp] = []
    for group, count in sorted(support.items(), key=lambda item: (-item[1], item[0])):
        share = count / total
        if count < config.min_support or share < config.min_share:
            continue
        members = groups[group]
        text = Counter(e.text for e in members).most_common(1)[0][0]
        if any(already_served(e) for e in members):
            continue
        chosen.append(FollowUp(text, context, follow_up_scope, count, round(share, 4)))
        if len(chosen) == config.max_follow_ups:
            break
    return chosen
