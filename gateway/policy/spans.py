"""The typed span every detector returns, and overlap resolution between detectors."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Span:
    """A detected entity: ``text[start:end]`` is of ``type``, found by ``detector``.

    ``confidence`` is in [0, 1]: how sure the detector is that the span is what it says
    (a Luhn-checked card with a known prefix scores higher than a bare digit run).
    """

    start: int
    end: int
    type: str
    text: str
    confidence: float
    detector: str

    def __len__(self) -> int:
        return self.end - self.start

    def overlaps(self, other: Span) -> bool:
        """True when the two spans share at least one character."""
        return self.start < other.end and other.start < self.end


def resolve_overlaps(spans: Iterable[Span]) -> list[Span]:
    """Keep a non-overlapping subset of ``spans``, sorted by start.

    Where spans overlap, the longer one wins, then the more confident one; the order of
    preference is greedy, so a long span can evict several short ones inside it (a phone
    number inside a street address, an IP inside a connection string).
    """
    ranked = sorted(spans, key=lambda s: (-len(s), -s.confidence, s.start))
    kept: list[Span] = []
    for span in ranked:
        if not any(span.overlaps(k) for k in kept):
            kept.append(span)
    kept.sort(key=lambda s: s.start)
    return kept
