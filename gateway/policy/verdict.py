"""A `Verdict`: what the policy decided about one request's input, built up stage by stage."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.audit.record import PolicyDecision
from gateway.policy.config import Action, PolicyProfile
from gateway.policy.jailbreak import JailbreakScore
from gateway.policy.rules import stronger
from gateway.policy.spans import Span
from gateway.policy.topics import TopicScore


@dataclass
class Verdict:
    """What the policy decided about one request's input."""

    action: Action
    profile: PolicyProfile = field(default_factory=PolicyProfile)
    decisions: list[PolicyDecision] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # redacted when action == "redact"
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original value
    spans: list[list[Span]] = field(default_factory=list)  # per text: the acted-on types
    jailbreak: JailbreakScore | None = None  # patterns only, then with the embedding signal
    topics: list[TopicScore] = field(default_factory=list)  # detected, highest first
    embedding_checks: str = "not needed"  # "ran", "not needed", or why they did not run
    dry_run: bool = False  # decided and recorded; action is never more than monitor
    latency_ms: float = 0.0

    @property
    def blocking_rules(self) -> list[str]:
        return [d.rule for d in self.decisions if d.action == "block"]

    @property
    def jailbreak_score(self) -> float:
        return self.jailbreak.score if self.jailbreak is not None else 0.0

    def take(self, decision: PolicyDecision, action: Action) -> None:
        """Record `decision`; the verdict's action becomes the stronger of the two (in a dry
        run, monitor at most)."""
        self.decisions.append(decision)
        self.action = "monitor" if self.dry_run else stronger(self.action, action)


def judge_jailbreak(
    verdict: Verdict, score: JailbreakScore, *, threshold: float | None = None
) -> None:
    """Record a jailbreak decision when `score` reaches `threshold` (default: the profile's
    pattern threshold, else the score's own)."""
    rule = verdict.profile.jailbreak
    if threshold is None:
        threshold = score.threshold if rule.threshold is None else rule.threshold
    if score.score < threshold or rule.action == "allow":
        return
    top = score.matches[0] if score.matches else None
    decision = PolicyDecision(
        rule=f"jailbreak.{top.id}" if top else "jailbreak",
        detector="jailbreak",
        action=rule.action,
        score=round(score.score, 4),
        threshold=round(threshold, 4),
        detail="; ".join(m.explanation for m in score.matches[:3]) or None,
    )
    verdict.take(decision, rule.action)
