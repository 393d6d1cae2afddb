"""The policy engine's input side: detectors run over a request's text, a profile decides.

`PolicyEngine.check(texts, profile)` returns a `Verdict`: the strongest action taken
(block > redact > monitor > allow), the decision records for the audit trail, and, for
`redact`, the texts with typed placeholders (one mapping across all of a request's texts, so
the same value is the same placeholder everywhere). CPU-bound: call it off the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError

from gateway.audit.record import PolicyDecision
from gateway.policy.config import Action, PolicyConfig, PolicyProfile
from gateway.policy.detection import CREDENTIAL_TYPES, detect
from gateway.policy.jailbreak import JailbreakScorer
from gateway.policy.redaction import redact
from gateway.policy.spans import Span

log = logging.getLogger(__name__)

_PLACEHOLDER_MAX = 32  # longest "[TYPE_n]" placeholder, in characters

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
    """Applies the configured profiles; with `policy.file`, the file's current ones."""

    def __init__(self, config: PolicyConfig, scorer: JailbreakScorer | None = None) -> None:
        self.config = config
        self._scorer = scorer or JailbreakScorer()
        self._file = Path(config.file) if config.file else None
        self._seen: tuple[int, int] | None = None
        self._reload_lock = threading.Lock()
        self.reloads = 0
        self._refresh()

    def _refresh(self) -> None:
        """Re-read `policy.file` if it changed since last seen (a stat per call: cheap)."""
        if self._file is None:
            return
        try:
            stat = self._file.stat()
        except OSError as exc:
            if self._seen != (0, 0):
                log.error(
                    "policy file %s unreadable (%s); keeping the last policy", self._file, exc
                )
                self._seen = (0, 0)
            return
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen == self._seen:
            return
        with self._reload_lock:
            if seen == self._seen:
                return
            self._seen = seen
            try:
                data = yaml.safe_load(self._file.read_text()) or {}
                loaded = PolicyConfig.model_validate(data.get("policy", data))
            except (yaml.YAMLError, ValidationError, OSError, AttributeError) as exc:
                log.error("policy file %s refused, keeping the last policy: %s", self._file, exc)
                return
            # The file may not point at itself again; the live file stays the one watched.
            self.config = loaded.model_copy(update={"file": str(self._file)})
            self.reloads += 1
            log.info("policy reloaded from %s (%d profiles)", self._file, len(loaded.profiles))

    def profile(self, name: str | None) -> PolicyProfile:
        """The named profile, else the default one."""
        self._refresh()
        profiles = self.config.profiles
        return profiles.get(name or "", profiles[self.config.default_profile])

    def output_filter(
        self, profile_name: str | None, redacted: Mapping[str, str] | None = None
    ) -> OutputFilter | None:
        """A filter for one answer, or None when there is nothing to do: no output rules and
        nothing to restore (and always in a dry run, where answers are never changed).
        `redacted` is the request's placeholder mapping, restored when the profile says so."""
        profile = self.profile(profile_name)
        restore = redacted if profile.restore_redacted else None
        filtering = any(a != "allow" for a in profile.output.values())
        if self.config.dry_run or not (filtering or restore):
            return None
        return OutputFilter(profile, restore)

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


class OutputBlocked(Exception):
    """An answer (or a stream's text so far) breaks an output rule."""

    def __init__(self, decisions: list[PolicyDecision]) -> None:
        super().__init__(", ".join(d.rule for d in decisions))
        self.decisions = decisions


class OutputFilter:
    """An answer's text through the output rules of one profile, whole or streamed.

    Streamed text is held back `hold_back_chars` behind the newest chunk, so a value split
    across chunks is seen whole before any of it is released; text is never released through
    the middle of a detected value. Placeholders number consistently across the whole answer.
    """

    def __init__(self, profile: PolicyProfile, restore: Mapping[str, str] | None = None) -> None:
        self._profile = profile
        self._restore = dict(restore or {})
        self._buffer = ""
        self._placeholders: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self.decisions: list[PolicyDecision] = []

    def feed(self, text: str) -> str:
        """Take the next piece of the answer; return what may be sent now (redacted).
        Raises OutputBlocked when a blocking rule matches."""
        self._buffer += text
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the answer, once it has ended."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        flagged = self._flagged(detect(self._buffer))
        boundary = len(self._buffer) if final else len(self._buffer) - self._profile.hold_back_chars
        for span, _ in flagged:
            if span.start < boundary < span.end:
                boundary = span.start
        if self._restore and not final:
            # Never release half of a placeholder: it could not be restored.
            opening = self._buffer.rfind("[", max(0, boundary - _PLACEHOLDER_MAX), boundary)
            if opening >= 0 and "]" not in self._buffer[opening:boundary]:
                boundary = opening
        if boundary <= 0:
            return ""
        released = self._redacted(
            self._buffer[:boundary], [s for s, _ in flagged if s.end <= boundary]
        )
        self._buffer = self._buffer[boundary:]
        for placeholder, value in self._restore.items():
            released = released.replace(placeholder, value)
        return released

    def _flagged(self, spans: list[Span]) -> list[tuple[Span, Action]]:
        flagged = []
        for span in spans:
            action = _action_for(self._profile, span.type, self._profile.output)
            if action == "allow":
                continue
            self._note(span, action)
            flagged.append((span, action))
        blocked = [d for d in self.decisions if d.action == "block"]
        if blocked:
            raise OutputBlocked(blocked)
        return [(s, a) for s, a in flagged if a == "redact"]

    def _note(self, span: Span, action: Action) -> None:
        rule = f"output.{span.type}"
        if not any(d.rule == rule and d.action == action for d in self.decisions):
            self.decisions.append(
                PolicyDecision(
                    rule=rule, detector=span.detector, action=action, span_types=[span.type]
                )
            )

    def _redacted(self, text: str, spans: list[Span]) -> str:
        out, position = [], 0
        for span in sorted(spans, key=lambda s: s.start):
            key = (span.type, span.text)
            if key not in self._placeholders:
                self._counts[span.type] = self._counts.get(span.type, 0) + 1
                self._placeholders[key] = f"[{span.type}_{self._counts[span.type]}]"
            out += [text[position : span.start], self._placeholders[key]]
            position = span.end
        out.append(text[position:])
        return "".join(out)


def _by_type(spans: list[Span]) -> dict[str, list[Span]]:
    grouped: dict[str, list[Span]] = {}
    for span in spans:
        grouped.setdefault(span.type, []).append(span)
    return grouped


def _action_for(
    profile: PolicyProfile, span_type: str, rules: dict[str, Action] | None = None
) -> Action:
    rules = profile.pii if rules is None else rules
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
