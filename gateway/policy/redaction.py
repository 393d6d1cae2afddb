"""Replace detected spans with typed placeholders (``[EMAIL_1]``) and put them back."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gateway.policy.detection import detect
from gateway.policy.spans import Span, resolve_overlaps

_PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]*_\d+)\]")


@dataclass(frozen=True, slots=True)
class Redacted:
    """Redacted ``text`` and the ``mapping`` from each placeholder (``"[EMAIL_1]"``) to the
    original value; the mapping is what ``restore`` needs and must stay with the request."""

    text: str
    mapping: dict[str, str] = field(default_factory=dict)


def redact(text: str, spans: Iterable[Span]) -> Redacted:
    """Replace each span with ``[TYPE_n]``, numbered per type in order of appearance.

    The same value of the same type gets the same placeholder everywhere in the request, so
    the model still sees that two mentions are one entity. Overlapping spans are resolved
    first (see ``resolve_overlaps``), so any detector output may be passed in.
    """
    ordered = resolve_overlaps(spans)
    counters: dict[str, int] = {}
    assigned: dict[tuple[str, str], str] = {}
    mapping: dict[str, str] = {}
    parts: list[str] = []
    cursor = 0
    for span in ordered:
        value = text[span.start : span.end]
        key = (span.type, value)
        placeholder = assigned.get(key)
        if placeholder is None:
            counters[span.type] = counters.get(span.type, 0) + 1
            placeholder = f"[{span.type}_{counters[span.type]}]"
            assigned[key] = placeholder
            mapping[placeholder] = value
        parts.append(text[cursor : span.start])
        parts.append(placeholder)
        cursor = span.end
    parts.append(text[cursor:])
    return Redacted("".join(parts), mapping)


def restore(text: str, mapping: Mapping[str, str]) -> str:
    """Put the original values back where ``text`` (e.g. a model's answer) contains a
    placeholder from ``mapping``; placeholders not in the mapping are left as they are."""
    if not mapping:
        return text
    return _PLACEHOLDER.sub(lambda m: mapping.get(m.group(), m.group()), text)


def redact_pii(text: str) -> str:
    """``text`` with every PII and secret span the detectors find replaced by its placeholder
    (the audit trail's ``redacted`` content mode)."""
    return redact(text, detect(text)).text


_TYPED = re.compile(r"\[([A-Z][A-Z0-9_]*?)_\d+\]")


def placeholders_as_words(text: str) -> str:
    """``text`` with each placeholder read out as its type ("[EMAIL_1]" -> "email",
    "[STREET_ADDRESS_2]" -> "street address"): what a model trained on people's own
    writing should read. A bracketed token is what attack templates look like ("[INSERT
    PROMPT HERE]"), so a classifier scoring redacted text took "please mail [EMAIL_1] the
    summary" for a jailbreak."""
    return _TYPED.sub(lambda m: m.group(1).lower().replace("_", " "), text)
