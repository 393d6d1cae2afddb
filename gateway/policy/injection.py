"""Indirect prompt injection: instructions hidden in content that reaches the model from
outside the caller, namely tool results (role=tool messages, Anthropic `tool_result` blocks)
and retrieved documents.

Each text is scored on its own, so one poisoned search result is not diluted by the rest of
the conversation: the pattern rules on its normalised form (zero-width characters and
look-alike letters do not hide "ignore previous instructions"), and, when the caller passes
that text's embedding, the learned classifier. The profile's `injection` section decides what
a flagged text gets; the decision names the text's index, its score and what matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gateway.audit.record import PolicyDecision
from gateway.policy.classifier import JailbreakClassifier, reads
from gateway.policy.config import Action, PolicyProfile
from gateway.policy.jailbreak import JailbreakScore, JailbreakScorer
from gateway.policy.normalize import normalize
from gateway.policy.rules import stronger
from gateway.policy.vectors import as_rows


@dataclass
class InjectionVerdict:
    """What the profile decided about a request's tool results and documents."""

    action: Action = "allow"
    decisions: list[PolicyDecision] = field(default_factory=list)
    scores: list[JailbreakScore] = field(default_factory=list)  # per text
    flagged: list[int] = field(default_factory=list)  # indices of flagged texts
    dry_run: bool = False

    @property
    def blocking_rules(self) -> list[str]:
        """The rules of block decisions."""
        return [d.rule for d in self.decisions if d.action == "block"]


def check_injection(
    texts: Sequence[str],
    profile: PolicyProfile,
    scorer: JailbreakScorer,
    classifier: JailbreakClassifier | None,
    *,
    embeddings: np.ndarray | None = None,
    dry_run: bool = False,
) -> InjectionVerdict:
    """Score each of `texts` (row i of `embeddings` is text i's, when given) under the
    profile's `injection` rule."""
    rule = profile.injection
    verdict = InjectionVerdict(dry_run=dry_run)
    rows = as_rows(embeddings) if embeddings is not None else None
    if rows is not None and rows.shape[0] != len(texts):
        raise ValueError(f"{rows.shape[0]} embeddings for {len(texts)} texts")
    pattern_cut = scorer.threshold if rule.threshold is None else rule.threshold
    for i, text in enumerate(texts):
        patterns = scorer.score(normalize(text).text)
        score, threshold = patterns, pattern_cut
        if rule.classifier and classifier is not None and rows is not None and reads(text):
            cut = (
                classifier.threshold
                if rule.classifier_threshold is None
                else rule.classifier_threshold
            )
            learned = classifier.match(rows[i], patterns, cut)
            if learned.weight >= cut or patterns.score < pattern_cut:
                score = JailbreakScore(
                    learned.weight, learned.weight >= cut, cut, (learned, *patterns.matches)
                )
                threshold = cut
        verdict.scores.append(score)
        if score.score < threshold or rule.action == "allow":
            continue
        verdict.flagged.append(i)
        top = score.matches[0] if score.matches else None
        decision = PolicyDecision(
            rule=f"injection.{top.id}" if top else "injection",
            detector="injection",
            action=rule.action,
            score=round(score.score, 4),
            threshold=threshold,
            detail=f"text {i}: " + ("; ".join(m.explanation for m in score.matches[:3]) or "-"),
        )
        verdict.decisions.append(decision)
        verdict.action = "monitor" if dry_run else stronger(verdict.action, rule.action)
    return verdict
