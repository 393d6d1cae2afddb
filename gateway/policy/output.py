"""The policy engine's output side: an answer's text through a profile's output rules."""

from __future__ import annotations

import copy
from collections.abc import Mapping

from gateway.audit.record import PolicyDecision
from gateway.policy.config import Action, PolicyProfile
from gateway.policy.detection import ALL_TYPES, detect
from gateway.policy.entities import ENTITY_TYPES, EntityRecognizer
from gateway.policy.normalize import invisible
from gateway.policy.rules import action_for
from gateway.policy.spans import Span

_PLACEHOLDER_MAX = 32  # longest "[TYPE_n]" placeholder, in characters


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

    def __init__(
        self,
        profile: PolicyProfile,
        restore: Mapping[str, str] | None = None,
        *,
        entities: EntityRecognizer | None = None,
        floors: Mapping[str, float] | None = None,
    ) -> None:
        """`entities` is the NER model, used when an output rule names an entity type;
        `floors` the per-type confidence floors (the engine's, for this profile)."""
        self._profile = profile
        self._restore = dict(restore or {})
        self._types = frozenset(t for t in ALL_TYPES if action_for(profile.output, t) != "allow")
        self._entities = entities if self._types & ENTITY_TYPES else None
        self._floors = dict(floors or {})
        self._buffer = ""
        self._placeholders: dict[tuple[str, str], str] = {}
        self._counts: dict[str, int] = {}
        self.decisions: list[PolicyDecision] = []

    def channel(self) -> OutputFilter:
        """A filter for another text of the same answer (another choice, a refusal, a tool
        call's arguments): a hold-back buffer of its own, and this filter's placeholders and
        decisions, so a value has one placeholder across the whole answer."""
        sibling = copy.copy(self)  # shallow: the numbering and the decisions are shared
        sibling._buffer = ""
        return sibling

    def feed(self, text: str) -> str:
        """Take the next piece of the answer; return what may be sent now (redacted).
        Raises OutputBlocked when a blocking rule matches."""
        self._buffer += text
        return self._release(final=False)

    def finish(self) -> str:
        """The rest of the answer, once it has ended."""
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        spans = detect(
            self._buffer, types=self._types, min_confidence=self._floors, entities=self._entities
        )
        flagged = self._flagged(spans)
        boundary = len(self._buffer) if final else self._held_back_from()
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

    def _held_back_from(self) -> int:
        """Where the held-back tail starts: `hold_back_chars` *visible* characters from the
        end, so that invisible padding cannot push half a value out of the window."""
        wanted, position = self._profile.hold_back_chars, len(self._buffer)
        while wanted > 0 and position > 0:
            position -= 1
            if not invisible(self._buffer[position]):
                wanted -= 1
        return position

    def _flagged(self, spans: list[Span]) -> list[tuple[Span, Action]]:
        flagged = []
        for span in spans:
            action = action_for(self._profile.output, span.type)
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
