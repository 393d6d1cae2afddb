"""The policy engine's input side: detectors run over a request's text, a profile decides.

`PolicyEngine.check(texts, profile)` returns a `Verdict`: the strongest action taken
(block > redact > monitor > allow), the decision records for the audit trail, and, for
`redact`, the texts with typed placeholders (one mapping across all of a request's texts, so
the same value is the same placeholder everywhere). CPU-bound: call it off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.audit.record import PolicyDecision
from gateway.policy.config import Action, PolicyConfig, PolicyProfile
from gateway.policy.detection import CREDENTIAL_TYPES, detect
from gateway.policy.jailbreak import JailbreakScorer
from gateway.policy.redaction import redact
from gateway.policy.spans import Span

_STRENGTH: dict[Action, int] = {"allow": 0, "monitor": 1, "redact": 2, "block": 3}


@dataclass
class Verdict:
    """What the policy decided about one request's input."""

    action: Action
    decisions: list[PolicyDecision] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # redacted when action == "redact"
    mapping: dict[str, str] = field(default_factory=dict)  # placeholder -> original value
    spans: list[list[Span]] = field(default_factory=list)  # per text, as detected
    jailbreak_score: float = 0.0
    latency_ms: float = 0.0

    @property
    def blocking_rules(self) -> list[str]:
        return [d.rule for d in self.decisions if d.action == "block"]


class PolicyEngine:
    """Applies the configured profiles."""

    def __init__(self, config: PolicyConfig, scorer: JailbreakScorer | None = None) -> None:
        self.config = config
        self._scorer = scorer or JailbreakScorer()

    def profile(self, name: str | None) -> PolicyProfile:
        """The named profile, else the default one."""
        profiles = self.config.profiles
        return profiles.get(name or "", profiles[self.config.default_profile])

    def check(self, texts: Sequence[str], profile_name: str | None) -> Verdict:
        """Decide on `texts` (a request's messages) under the profile."""
        started = time.perf_counter()
        profile = self.profile(profile_name)
        verdict = Verdict(action="allow", texts=list(texts))
        redactions: list[list[Span]] = []
        for text in texts:
            spans = detect(text)
            verdict.spans.append(spans)
            to_redact = []
            for span_type, found in _by_type(spans).items():
                action = _action_for(profile, span_type)
                if action == "allow":
                    continue
                verdict.decisions.append(
                    PolicyDecision(
                        rule=f"pii.{span_type}",
                        detector=found[0].detector,
                        action=action,
                        span_types=[span_type],
                    )
                )
                verdict.action = _stronger(verdict.action, action)
                if action == "redact":
                    to_redact += found
            redactions.append(to_redact)
        jailbreak = self._scorer.score("\n".join(texts))
        verdict.jailbreak_score = jailbreak.score
        threshold = profile.jailbreak.threshold
        flagged = jailbreak.flagged if threshold is None else jailbreak.score >= threshold
        if flagged and profile.jailbreak.action != "allow":
            top = jailbreak.matches[0] if jailbreak.matches else None
            verdict.decisions.append(
                PolicyDecision(
                    rule=f"jailbreak.{top.id}" if top else "jailbreak",
                    detector="jailbreak",
                    action=profile.jailbreak.action,
                )
            )
            verdict.action = _stronger(verdict.action, profile.jailbreak.action)
        if verdict.action == "redact":
            verdict.texts, verdict.mapping = _redact_all(texts, redactions)
        if self.config.dry_run:
            verdict.action = "monitor" if verdict.decisions else "allow"
            verdict.texts = list(texts)
        verdict.latency_ms = (time.perf_counter() - started) * 1000
        return verdict


def _by_type(spans: list[Span]) -> dict[str, list[Span]]:
    grouped: dict[str, list[Span]] = {}
    for span in spans:
        grouped.setdefault(span.type, []).append(span)
    return grouped


def _action_for(profile: PolicyProfile, span_type: str) -> Action:
    rules = profile.pii
    if span_type in rules:
        return rules[span_type]
    if span_type in CREDENTIAL_TYPES and "credentials" in rules:
        return rules["credentials"]
    return rules.get("*", "allow")


def _stronger(a: Action, b: Action) -> Action:
    return a if _STRENGTH[a] >= _STRENGTH[b] else b


def _redact_all(texts: Sequence[str], spans: list[list[Span]]) -> tuple[list[str], dict[str, str]]:
    # One mapping across the request: the same value keeps one placeholder in every message.
    # Texts are joined with a separator no detector matches, redacted once, and split back.
    separator = "\u0000"
    offsets, position = [], 0
    for text in texts:
        offsets.append(position)
        position += len(text) + 1
    shifted = [
        Span(s.start + offsets[i], s.end + offsets[i], s.type, s.text, s.confidence, s.detector)
        for i, group in enumerate(spans)
        for s in group
    ]
    redacted = redact(separator.join(texts), shifted)
    return redacted.text.split(separator), redacted.mapping
