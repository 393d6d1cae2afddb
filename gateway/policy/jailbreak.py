"""Pattern-based jailbreak and prompt-injection scoring.

Rules are data (``jailbreak_patterns.yaml``): each is a weighted regex (or a set of regexes
that must all match) with an id and an explanation. The score combines the weights of the
matched rules by noisy-OR, ``1 - prod(1 - w)``, so independent weak cues add up while no
single weak cue crosses the threshold alone.

Further signals (the embedding similarity to known attacks, ``gateway.policy.similarity``)
plug in through ``JailbreakSignal`` and combine the same way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from gateway.policy.data import read_yaml
from gateway.policy.prefilter import may_match

_PATTERNS_FILE = "jailbreak_patterns.yaml"


@dataclass(frozen=True, slots=True)
class JailbreakRule:
    """One weighted cue. The rule matches when every regex in ``patterns`` matches."""

    id: str
    category: str
    weight: float
    explanation: str
    patterns: tuple[re.Pattern[str], ...]
    case_sensitive: bool = False

    def matches(self, text: str, lowered: str | None = None) -> bool:
        """True when all of the rule's patterns are found in ``text`` (``lowered`` is
        ``text.lower()``, passed in so that it is computed once per prompt)."""
        if not self.case_sensitive:
            text = lowered if lowered is not None else text.lower()
        # substring tests first: most rules are ruled out without a regex scan
        return all(may_match(p, text) for p in self.patterns) and all(
            p.search(text) for p in self.patterns
        )


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule (or external signal) that contributed to a score, with its weight."""

    id: str
    category: str
    weight: float
    explanation: str


@dataclass(frozen=True, slots=True)
class JailbreakScore:
    """``score`` in [0, 1]; ``flagged`` when it reaches the scorer's threshold; ``matches``
    lists every contributing rule, strongest first, for the audit trail and the user."""

    score: float
    flagged: bool
    threshold: float
    matches: tuple[RuleMatch, ...] = field(default_factory=tuple)


Embedding = np.ndarray | Sequence[float]
"""A prompt's embedding: one vector, or one row per text of the prompt."""


@runtime_checkable
class JailbreakSignal(Protocol):
    """An extra, non-pattern signal (e.g. similarity of the prompt's embedding to known
    jailbreaks). Returns ``None`` when it has nothing to say (e.g. no embedding was
    computed), else a match whose ``weight`` in [0, 1] joins the noisy-OR."""

    def __call__(self, text: str, embedding: Embedding | None) -> RuleMatch | None:
        """Score ``text`` (and its precomputed embedding, when there is one)."""
        ...


# An upper-case letter that is not an escape such as \S or \W: it could never match the
# lowercased text.
_UPPER_LITERAL = re.compile(r"(?<!\\)[A-Z]")


def _compile(rule_id: str, source: str, case_sensitive: bool) -> re.Pattern[str]:
    if not case_sensitive and _UPPER_LITERAL.search(source):
        raise ValueError(f"rule {rule_id}: write case-insensitive patterns in lower case")
    return re.compile(source, re.MULTILINE)


def load_rules(path: str | None = None) -> tuple[float, tuple[JailbreakRule, ...]]:
    """Read ``(threshold, rules)`` from a YAML file (default: the packaged patterns)."""
    doc: dict[str, Any] = read_yaml(path, _PATTERNS_FILE)
    rules = []
    for item in doc["rules"]:
        sources = item.get("all_of") or [item["pattern"]]
        weight = float(item["weight"])
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"rule {item['id']}: weight must be in (0, 1], got {weight}")
        case_sensitive = bool(item.get("case_sensitive", False))
        rules.append(
            JailbreakRule(
                id=item["id"],
                category=item["category"],
                weight=weight,
                explanation=item["explanation"],
                patterns=tuple(_compile(item["id"], s, case_sensitive) for s in sources),
                case_sensitive=case_sensitive,
            )
        )
    return float(doc["threshold"]), tuple(rules)


class JailbreakScorer:
    """Scores prompts for jailbreak and prompt-injection cues.

    ``threshold`` (default: the one in the patterns file) decides ``flagged``; ``signals``
    are extra ``JailbreakSignal``s combined with the rule weights.
    """

    def __init__(
        self,
        rules: Sequence[JailbreakRule] | None = None,
        *,
        threshold: float | None = None,
        signals: Sequence[JailbreakSignal] = (),
    ) -> None:
        default_threshold, default_rules = load_rules()
        self.rules: tuple[JailbreakRule, ...] = tuple(rules) if rules is not None else default_rules
        self.threshold = default_threshold if threshold is None else threshold
        self.signals = tuple(signals)
        self._rule_ids = frozenset(r.id for r in self.rules)

    def score(self, text: str, *, embedding: Embedding | None = None) -> JailbreakScore:
        """Score ``text``; ``embedding`` is passed to the extra signals only."""
        lowered = text.lower()
        matches = [
            RuleMatch(r.id, r.category, r.weight, r.explanation)
            for r in self.rules
            if r.matches(text, lowered)
        ]
        return self._combined(matches, self._signalled(text, embedding))

    def with_signals(
        self,
        base: JailbreakScore,
        text: str,
        embedding: Embedding | None,
        *,
        signals: Sequence[JailbreakSignal] | None = None,
    ) -> JailbreakScore:
        """``base`` (a score of ``text`` without its embedding) with the extra signals'
        matches joined: the rules are not run again. ``signals`` replaces the scorer's own."""
        rules_only = [m for m in base.matches if m.id in self._rule_ids]
        return self._combined(rules_only, self._signalled(text, embedding, signals))

    def _signalled(
        self,
        text: str,
        embedding: Embedding | None,
        signals: Sequence[JailbreakSignal] | None = None,
    ) -> list[RuleMatch]:
        chosen = self.signals if signals is None else signals
        found = (signal(text, embedding) for signal in chosen)
        return [m for m in found if m is not None]

    def _combined(self, matches: list[RuleMatch], extra: list[RuleMatch]) -> JailbreakScore:
        matches = [*matches, *extra]
        remaining = 1.0
        for m in matches:
            remaining *= 1.0 - min(max(m.weight, 0.0), 1.0)
        value = 1.0 - remaining
        matches.sort(key=lambda m: -m.weight)
        return JailbreakScore(
            score=value,
            flagged=value >= self.threshold,
            threshold=self.threshold,
            matches=tuple(matches),
        )


_default: JailbreakScorer | None = None


def score(text: str) -> JailbreakScore:
    """Score ``text`` with the packaged rules and threshold (scorer built once, lazily)."""
    global _default
    if _default is None:
        _default = JailbreakScorer()
    return _default.score(text)
