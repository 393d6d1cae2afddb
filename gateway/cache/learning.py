"""The learned semantic decision: serve or explore, under an operator-set error bound.

After the keyed phases missed and the vetoes passed, a candidate entry at similarity `s` has
an estimated risk: the chance that its answer is wrong for this request. The operator's bound
(`max_error_rate`) is a share of lookups: `bound * lookups` wrong answers are allowed. As in
vCache (Schroeder et al., "vCache: Verified Semantic Prompt Caching", ICLR 2026), risks are
learned online from comparing cached answers with fresh ones; unlike vCache's per-request
rule (serve with probability bound / risk), the budget is spent on the safest candidates
first: a candidate is served when its risk is at most the alias's cutoff (`budget.AliasTraffic`:
the highest risk at which serving every recent candidate up to it stays within the bound,
with a margin), never above `max_hit_risk`, and always when its risk is within the bound
itself (so a cold cache serves what the static one served). A request that is not served
goes upstream anyway; its fresh answer is compared with the candidate's (an "observed"
exploration, free of extra spend). A share of would-be hits is answered fresh too ("shadow"
explorations, within a budget): up to half where the alias has no data yet at that
similarity, falling to the configured exploration rate as data come in, so that confident
regions are checked first and keep being checked. A semantic hit stores nothing, so a
question served from a neighbourhood and asked again would be served at the same risk on every
repeat (on the dev traces, out of domain, over 40 % of the static cache's wrong answers were
such repeats): a replica remembers the questions it served unchecked, and checks one when it
comes back, with a probability of its risk over the cutoff (the riskiest served are checked on
their first repeat, the safest seldom: a check costs the hit it replaces). Once checked, the
fresh answer is stored under the question's own key and its verdict stands. Such a check was
chosen for being asked again, not drawn from what is served, so it counts for its
neighbourhood and not in the alias's rates.

The risk estimate (`Learner.risk`) combines:
- the alias's pooled rates (`rates.AliasRates`): the share of wrong candidates per similarity
  bin; cold, they reproduce the static threshold (wrong below, right above), so a new
  deployment serves exactly what the static cache served;
- the candidate's neighbourhood: entries whose stored answers agree form one cluster, and its
  observations count for all of them. A right answer at similarity s' <= s supports serving
  at s, a wrong one at s' >= s speaks against it; nearer ones count with a kernel. The two
  are combined as a Beta posterior whose prior is the alias's rate with `ENTRY_WEIGHT`
  pseudo-observations, whose mean is the risk;
- the request itself: a question asked again after it was compared with the neighbourhood
  (popular questions repeat) takes that verdict: right, or never again;
- for a conversation, its context (the earlier user turns) read as a question. The candidate's
  similarity is the lower of its last turn's and its context's, and the alias's conversation
  rates learn from few exchanges, most of them on one topic; the single-question rates learn
  from far more, near misses included. On the mock dev trace the one follow-up answered wrong
  after a different exchange (the same one under six seeds) had the same last turn and a
  context at 0.89 from another question: risk 0.17-0.20 as a conversation, about 0.5 as a
  question. The prior is therefore at least the single-question rate at the context's
  similarity: a context must be as convincing as the question would be on its own (cold:
  the static threshold, as before);
- the candidate's margin (`Learner.margin`): how far it leads the nearest other candidate whose
  answer is not known to agree with its own. Where stored questions with different answers
  crowd around a request, the nearest is often not the right one at a similarity at which,
  among clear candidates, it nearly always is (on the dev traces, out of domain: 0.9-0.95
  right about 95 % of the time with a lead of 0.15 or more, about a third within 0.05). The
  alias's rates are therefore kept per margin class as well as pooled (`rates.MARGIN_EDGES`:
  granularity only, chosen on the dev traces; each class's risks are learned from the
  alias's own traffic), and a class's data are shrunk towards the pooled rates, so that a
  class with few observations reads like the alias as a whole (cold: the static prior).

Whether a candidate may be served is a function of what the shared log holds (observations,
and batches of traffic counts, applied in log order), so replicas at the same log position,
and a restarted one, decide the same. Which would-be hits are shadowed is a random draw per
replica (`rng`), within a per-replica budget.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from gateway.cache.budget import RISK_BINS, AliasTraffic, HourlyBudget, risk_bin
from gateway.cache.neighbourhood import Neighbourhood
from gateway.cache.rates import POOLED, AliasRates, margin_class

Action = Literal["serve", "explore"]
Kind = Literal["single", "conversation"]

# Pseudo-observations that the alias's rate counts for inside one neighbourhood.
ENTRY_WEIGHT = 8.0
# Shadow probability where an alias has no data yet at a similarity (it falls as data come
# in, down to the configured exploration rate).
UNCERTAIN_SHADOW = 0.5
# Requests remembered as served unchecked (per replica), for checking when asked again.
MAX_SERVED_PAIRS = 4096
# Share of the error allowance the cutoff plans to spend: the rest absorbs estimation error
# and the lag between the traffic counted and the traffic served.
BUDGET_SHARE = 0.8


@dataclass(frozen=True)
class Decision:
    """What to do with a candidate: serve it, or explore it (answer fresh and compare; to a
    caller that does not explore, a miss).

    `risk` is the estimated chance that its answer is wrong; `shadow` marks an exploration
    of a candidate that would have been served.
    """

    action: Action
    risk: float
    shadow: bool = False
    chance: float = 1.0  # a shadow's probability: its observation stands for 1 / chance hits
    # A shadow of a question served before and asked again: chosen for being asked again,
    # not drawn from the served candidates, so it informs its neighbourhood, not the alias's
    # rates (popular questions would make them look safer than what is served).
    repeat: bool = False


class Learner:
    """Per-neighbourhood evidence and per-alias rates; decides what to do with a candidate."""

    def __init__(
        self, window_s: float, clock: Callable[[], float], rng: random.Random | None = None
    ) -> None:
        self._window_s = window_s
        self._clock = clock
        self._rng = rng or random.Random()
        self._rates: dict[tuple[str, Kind, int], AliasRates] = {}  # (alias, kind, class)
        self._traffic: dict[tuple[str, str], AliasTraffic] = {}
        self._parent: dict[int, int] = {}  # union-find over entry ids; a root names a cluster
        self._clusters: dict[int, Neighbourhood] = {}
        self._group: dict[int, tuple[str, Kind]] = {}  # entry id -> (alias, kind)
        # Requests (pairs) served semantically and not checked since: this replica's, most
        # recent last. Which would-be hits are shadowed is per replica, as the draws are.
        self._served: OrderedDict[str, None] = OrderedDict()

    # --- state -------------------------------------------------------------------------

    def add_entry(self, entry_id: int, model: str, kind: Kind) -> None:
        """A new entry, alone in its neighbourhood until an agreeing answer joins it."""
        self._parent[entry_id] = entry_id
        self._clusters[entry_id] = Neighbourhood(members={entry_id}, ids={entry_id})
        self._group[entry_id] = (model, kind)

    def remove_entry(self, entry_id: int) -> None:
        """Forget an entry; its neighbourhood keeps what was observed while others remain."""
        if entry_id not in self._group:
            return
        root = self._root(entry_id)
        cluster = self._clusters[root]
        cluster.members.discard(entry_id)
        self._group.pop(entry_id, None)
        if not cluster.members:
            # Removed members stay in the union-find while their cluster lives (the others
            # find the root through them); the last one out takes them all.
            del self._clusters[root]
            for member in cluster.ids:
                self._parent.pop(member, None)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._group

    def join(self, entry_id: int, other_id: int) -> None:
        """Two entries' answers agree: one neighbourhood from now on (the lower id names it)."""
        if entry_id not in self._group or other_id not in self._group:
            return
        a, b = self._root(entry_id), self._root(other_id)
        if a == b:
            return
        keep, gone = min(a, b), max(a, b)
        target, source = self._clusters[keep], self._clusters.pop(gone)
        target.members |= source.members
        target.ids |= source.ids
        for pair, (similarity, equivalent) in source.observations.items():
            if pair not in target.observations:
                target.record(pair, similarity, equivalent)
        self._parent[gone] = keep

    def record(
        self,
        entry_id: int,
        pair: str,
        similarity: float,
        equivalent: bool,
        at: float,
        weight: float = 1.0,
        *,
        margin: float | None = None,
    ) -> bool:
        """An observation of `entry_id`'s answer against another request's (`pair` names the
        two, so the same comparison never counts twice). `weight` is how many candidates it
        stands for in the alias's rates: a shadow call samples the served candidates with its
        probability, so it stands for 1 / probability of them; `margin` (the candidate's lead
        when it was decided on) picks the rates it counts in. Returns whether it was new."""
        group = self._group.get(entry_id)
        if group is None:
            return False
        cluster = self._clusters[self._root(entry_id)]
        seen = cluster.observations.get(pair)
        cluster.record(pair, similarity, equivalent)
        if seen is not None and seen[1] == equivalent:
            return False
        self._alias_rates(*group, POOLED).add(similarity, not equivalent, at, weight)
        self._alias_rates(*group, margin_class(margin)).add(similarity, not equivalent, at, weight)
        return True

    def _alias_rates(self, model: str, kind: Kind, margin: int) -> AliasRates:
        rates = self._rates.get((model, kind, margin))
        if rates is None:
            rates = self._rates[(model, kind, margin)] = AliasRates(self._window_s)
        return rates

    def margin(
        self, entry_id: int, similarity: float, candidates: list[tuple[int, float]]
    ) -> float | None:
        """`entry_id`'s lead (at `similarity`) over the most similar of `candidates` (entry
        id, similarity) outside its neighbourhood: None when there is none. Vetoed candidates
        count too: a stored question that differs in a fact still crowds the request."""
        if entry_id not in self._group:
            return None
        root = self._root(entry_id)
        rivals = [
            s for other, s in candidates if other in self._group and self._root(other) != root
        ]
        return similarity - max(rivals) if rivals else None

    def observations(self, entry_id: int) -> int:
        """Observations in `entry_id`'s neighbourhood."""
        if entry_id not in self._group:
            return 0
        return len(self._clusters[self._root(entry_id)].observations)

    def neighbourhood(self, entry_id: int) -> int | None:
        """The id naming `entry_id`'s neighbourhood (None for an unknown entry)."""
        return self._root(entry_id) if entry_id in self._group else None

    def count_traffic(
        self,
        model: str,
        kind: str,
        at: float,
        lookups: float,
        risks: list[float],
        served: float,
    ) -> None:
        """Add a batch of lookups, the risks of the candidates decided among them, and the
        summed risk of those served."""
        traffic = self._traffic.get((model, kind))
        if traffic is None:
            traffic = self._traffic[(model, kind)] = AliasTraffic(self._window_s)
        count, spent = np.zeros(RISK_BINS), np.zeros(RISK_BINS)
        for risk in risks:
            count[risk_bin(risk)] += 1
            spent[risk_bin(risk)] += risk
        traffic.add(at, lookups, count, spent, served)

    def cutoff(self, model: str, kind: str, bound: float, max_hit_risk: float) -> float:
        """The highest risk at which a candidate of (`model`, `kind`) is served now."""
        traffic = self._traffic.get((model, kind))
        planned = 0.0
        if traffic is not None:
            traffic.expire(self._clock())
            planned = traffic.cutoff(bound, BUDGET_SHARE)
        return max(bound, min(planned, max_hit_risk))

    def alias_observations(self) -> dict[str, int]:
        """Observations counted per alias and kind, for stats."""
        out: dict[str, int] = {}
        for (model, kind, margin), rates in self._rates.items():
            if margin == POOLED:
                out[f"{model}/{kind}"] = rates.observations
        return out

    # --- decisions ---------------------------------------------------------------------

    def risk(
        self,
        entry_id: int,
        similarity: float,
        *,
        static_threshold: float,
        bound: float,
        pair: str | None = None,
        margin: float | None = None,
        context_similarity: float | None = None,
    ) -> float:
        """The estimated chance that `entry_id`'s answer is wrong for a request at
        `similarity`, leading its nearest rival by `margin` (see the module docstring). A
        conversation's `context_similarity` (its earlier turns') is also read against the
        alias's single-question rates. When this very request (`pair`) was compared with the
        neighbourhood before, that verdict decides: 0 or 1."""
        group = self._group.get(entry_id)
        if group is None:
            return 1.0
        cluster = self._clusters[self._root(entry_id)]
        if pair is not None and pair in cluster.observations:
            return 0.0 if cluster.observations[pair][1] else 1.0
        prior = self.alias_risk(
            *group, similarity, margin, static_threshold=static_threshold, bound=bound
        )
        if context_similarity is not None:
            # A follow-up's context is a question: it is judged by what the alias learned
            # about questions at that similarity, however the conversations have gone.
            prior = max(
                prior,
                self.question_risk(
                    group[0], context_similarity, static_threshold=static_threshold, bound=bound
                ),
            )
        wrong, right = cluster.evidence(similarity)
        return (ENTRY_WEIGHT * prior + wrong) / (ENTRY_WEIGHT + wrong + right)

    def question_risk(
        self, model: str, similarity: float, *, static_threshold: float, bound: float
    ) -> float:
        """The alias's share of wrong single-question candidates at `similarity`, every
        margin class together (cold: the static threshold's prior)."""
        pooled = self._alias_rates(model, "single", POOLED)
        pooled.expire(self._clock())
        return pooled.rate(similarity, static_threshold=static_threshold, bound=bound)

    def alias_risk(
        self,
        model: str,
        kind: Kind,
        similarity: float,
        margin: float | None,
        *,
        static_threshold: float,
        bound: float,
    ) -> float:
        """The alias's share of wrong candidates at `similarity` in `margin`'s class: the
        class's own data shrunk towards the alias's pooled rates."""
        now = self._clock()
        pooled = self._alias_rates(model, kind, POOLED)
        rates = self._alias_rates(model, kind, margin_class(margin))
        pooled.expire(now)
        rates.expire(now)
        return rates.rate(similarity, static_threshold=static_threshold, bound=bound, within=pooled)

    def decide(
        self,
        entry_id: int,
        similarity: float,
        *,
        static_threshold: float,
        bound: float,
        max_hit_risk: float,
        exploration_rate: float,
        budget: HourlyBudget,
        pair: str | None = None,
        margin: float | None = None,
        context_similarity: float | None = None,
    ) -> Decision:
        """Serve when the risk is within the alias's cutoff; otherwise explore. A would-be hit
        is explored instead (shadow) with probability `exploration_rate` while `budget`
        lasts. `pair` names the request, as observations do; `margin` is the candidate's
        lead over its nearest rival (`margin`); `context_similarity` a conversation's context
        similarity (`risk`)."""
        if entry_id not in self._group:
            return Decision("explore", 1.0)
        risk = self.risk(
            entry_id,
            similarity,
            static_threshold=static_threshold,
            bound=bound,
            pair=pair,
            margin=margin,
            context_similarity=context_similarity,
        )
        model, kind = self._group[entry_id]
        # Strictly below `max_hit_risk`: a candidate nothing is known about has risk 0.5
        # (`rates.PRIOR_BELOW`), and must not be served however loose the budget is.
        servable = risk <= bound or risk < max_hit_risk
        cutoff = self.cutoff(model, kind, bound, max_hit_risk)
        if servable and risk <= cutoff:
            if pair is not None and risk > 0.0 and exploration_rate > 0 and pair in self._served:
                # A question served from this neighbourhood before and asked again, never
                # checked. A semantic hit stores nothing, so every repeat is served at the
                # same risk until it is checked; once checked, the fresh answer is stored
                # under its own key and the verdict stands. A check costs the hit it replaces:
                # worth it in proportion to the risk, so the riskiest served (those near the
                # cutoff) are checked on their first repeat, the safest seldom.
                if self._rng.random() < risk / cutoff and budget.take():
                    del self._served[pair]
                    return Decision("explore", risk, shadow=True, repeat=True)
            # Where the alias's estimate still rests on its prior, check more often (up to
            # UNCERTAIN_SHADOW); a random draw, not a hash of the request: a popular question
            # asked again and again must get its turn to be checked.
            rates = self._rates.get((model, kind, margin_class(margin)))
            known = rates.evidence(similarity) if rates is not None else 0.0
            chance = max(exploration_rate, UNCERTAIN_SHADOW * (1.0 - known))
            if exploration_rate > 0 and self._rng.random() < chance and budget.take():
                return Decision("explore", risk, shadow=True, chance=chance)
            if pair is not None and risk > 0.0:
                self._served[pair] = None
                self._served.move_to_end(pair)
                while len(self._served) > MAX_SERVED_PAIRS:
                    self._served.popitem(last=False)
            return Decision("serve", risk)
        return Decision("explore", risk)

    def _root(self, entry_id: int) -> int:
        root = entry_id
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[entry_id] != root:  # path compression
            self._parent[entry_id], entry_id = root, self._parent[entry_id]
        return root
