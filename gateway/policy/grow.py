"""Spans grown over the words that belong to them, once every detector has run.

Detectors find the core of an entity; what identifies a person often sits beside it:

* a title before a name ("Dr. Anette Lahtela": the title tells the reader a gender or a
  profession, and a redacted name with its title left standing still narrows who it was);
* the time after a date ("1978-04-13 12:20:39");
* the rest of an address block: the building number before a street, the unit line
  ("Suite 321"), the locality and the postcode that follow on the next lines or after a
  comma. Address parts that touch (only spaces, commas, line breaks or e-mail quote markers
  between them) become one ``STREET_ADDRESS`` span, so a redacted letter head reads
  ``[STREET_ADDRESS]`` once, not as a ladder of placeholders with the postcode left over.

Nothing here creates a span from nothing except a unit line ("Apt. 805", "Suite 680"),
which is an address part wherever it stands.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import replace

from gateway.policy.spans import Span

_TITLE_BEFORE = re.compile(
    r"(?<![\w.])(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Madam|Mme|Mlle|Herr|Frau|Rev|Capt)"
    r"\.?[ \t]+$"
)
_TIME_AFTER = re.compile(
    r"(?:,?[ \t]+(?:at[ \t]+)?|T)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
    r"(?:[ \t]?(?:[AaPp]\.?[Mm]\.?))?(?:[ \t]?(?:Z|UTC|GMT|[+-]\d{2}:?\d{2}))?(?![\w:])"
)
_NUMBER_BEFORE = re.compile(r"(?<![\w.,-])\d{1,6}[A-Za-z]?[ \t]+$")
_UNIT_LINE = re.compile(
    r"\b(?:Apt\.?|Apartment|Suite|Ste\.|Flat|Unit|Room|Rm\.)[ \t]*#?\d{1,5}[A-Za-z]?\b"
)
# A postcode straight after an address part: "Hungary 06554", "Caxias do Sul, RS 24893",
# "SW1A 1AA", "7412 SL", "394 13".
_POSTCODE_AFTER = re.compile(
    r"[ \t,]+(?:[A-Z]{2}[ \t]+)?(?:\d{3,6}(?:[ -]\d{2,4})?(?:[ \t][A-Z]{2})?"
    r"|[A-Z]{1,2}\d[A-Z\d]?[ \t]\d[A-Z]{2})(?![\w-])"
)
# What may stand between two parts of one address: spaces, commas, line breaks, and the
# quote markers of a forwarded e-mail.
# One line break at most: a blank line ends the block.
_JOIN = re.compile(r"[ \t,>|]*(?:\n[ \t,>|]*)?")
_SAME_LINE = re.compile(r"[ \t]*")
_EDGE = frozenset(" \t\n,>|")
_ADDRESS_PARTS = frozenset({"STREET_ADDRESS", "LOCATION"})
_WEAK = "ADDRESS_PART"
_SHAPE = "street_shape"
_WORD = r"[^\W\d_][\w'.-]*"
_CAP = r"[A-ZÀ-ÖØ-ÞΑ-Ω][\w'-]*"
# Weak parts, address parts only beside a stronger one:
# a building number, a street name of any script and case, a house number ("233 Erzsébet
# tér 19.", "5850 Jana Nerudy 894");
_STREET_SHAPE = re.compile(
    rf"(?<![\w.,-])\d{{1,6}}[ \t]+(?:{_WORD}[ \t]+){{1,4}}\d{{1,5}}[A-Za-z]?\.?(?![\w])"
)
# a line of one to four capitalised words, perhaps a region code, a note in brackets and a
# postcode ("LONDON", "Domoszló", "Cyprus (Greek) 25572", ", RS", " 51971");
_LOCALITY_LINE = re.compile(
    rf"(?m)^[ \t>|,]*(?P<part>(?:{_CAP}(?:[ \t]+{_CAP}){{0,3}})?(?:,?[ \t]*[A-Z]{{2}})?"
    rf"(?:[ \t]*\([^\n)]{{1,24}}\))?(?:[ \t]*\d{{3,6}}(?:[ -]\d{{2,4}})?)?)[ \t]*$"
)
# capitalised words running on after a street on its line ("... Street Kishiev Squares").
_CAPITALISED_RUN = re.compile(rf"(?<=[ \t]){_CAP}(?:[ \t]+{_CAP}){{0,2}}")
_DATES = frozenset({"DATE_TIME", "DATE_OF_BIRTH"})


def grow(text: str, spans: Iterable[Span], types: Collection[str]) -> list[Span]:
    """``spans`` with titles, times and address blocks taken in (see the module docstring);
    only for the selected ``types``. Overlaps are left to ``resolve_overlaps``."""
    grown = [_grow_one(text, s) for s in spans]
    if "STREET_ADDRESS" not in types:
        return grown
    grown.extend(
        Span(m.start(), m.end(), "STREET_ADDRESS", m.group(), 0.6, "street_address")
        for m in _UNIT_LINE.finditer(text)
    )
    return _address_blocks(text, grown)


def _grow_one(text: str, span: Span) -> Span:
    start, end = span.start, span.end
    if span.type == "PERSON":
        title = _TITLE_BEFORE.search(text, max(0, start - 8), start)
        start = title.start() if title else start
    elif span.type in _DATES:
        time = _TIME_AFTER.match(text, end)
        end = time.end() if time else end
    elif span.type == "STREET_ADDRESS":
        number = _NUMBER_BEFORE.search(text, max(0, start - 9), start)
        start = number.start() if number else start
    if (start, end) == (span.start, span.end):
        return span
    return replace(span, start=start, end=end, text=text[start:end])


def _address_blocks(text: str, spans: list[Span]) -> list[Span]:
    """Chains of touching address parts that hold a street address become one span; the
    weak parts (a line shaped like a street, a locality or a postcode) count only inside
    such a chain."""
    strong = [s for s in spans if s.type in _ADDRESS_PARTS]
    if not any(s.type == "STREET_ADDRESS" for s in strong):
        return spans
    parts = sorted(strong + list(_weak_parts(text)), key=lambda s: (s.start, -s.end))
    chains: list[tuple[int, int, list[Span]]] = []
    for part in parts:
        if chains and (part.start <= chains[-1][1] or _touch(text, chains[-1][1], part)):
            start, end, members = chains[-1]
            chains[-1] = (start, max(end, part.end), [*members, part])
        else:
            chains.append((part.start, part.end, [part]))
    result = [s for s in spans if s.type not in _ADDRESS_PARTS]
    for _, end, members in chains:
        streets = [s for s in members if s.type == "STREET_ADDRESS"]
        if not streets:
            result.extend(s for s in members if s.type in _ADDRESS_PARTS)
            continue
        # An address block runs down from its street: the lines above it (a name, a
        # company) are not part of it, whatever their shape.
        first = min(s.start for s in members if s.type == "STREET_ADDRESS" or s.detector == _SHAPE)
        members = [s for s in members if s.start >= first or "\n" not in text[s.end : first]]
        postcode = _POSTCODE_AFTER.match(text, end)
        if postcode:
            members.append(Span(postcode.start(), postcode.end(), _WEAK, "", 0.0, ""))
        confidence = max(s.confidence for s in streets)
        result.extend(
            Span(start, end, "STREET_ADDRESS", text[start:end], confidence, "street_address")
            for start, end in _lines_of(text, members)
        )
    return result


def _lines_of(text: str, members: list[Span]) -> list[tuple[int, int]]:
    """The members' characters merged into one range per stretch without a separator
    (line breaks, commas and quote markers stay outside, as the layout of the text)."""
    ranges: list[tuple[int, int]] = []
    for span in sorted(members, key=lambda s: s.start):
        start, end = span.start, span.end
        if start == end:
            continue
        if ranges and (start <= ranges[-1][1] or _SAME_LINE.fullmatch(text, ranges[-1][1], start)):
            ranges[-1] = (ranges[-1][0], max(end, ranges[-1][1]))
        else:
            ranges.append((start, end))
    return [(s, e) for s, e in (_trimmed(text, s, e) for s, e in ranges) if e > s]


def _trimmed(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start] in _EDGE:
        start += 1
    while end > start and text[end - 1] in _EDGE:
        end -= 1
    if end > start and text[end - 1] == "." and text[end - 2 : end - 1].isdigit():
        end -= 1  # "Suite 215." ending a sentence; a house number's own dot goes with it
    return start, end


def _weak_parts(text: str) -> list[Span]:
    # One part per range, the most telling kind first (a capitalised word that is a whole
    # line is a locality line, which may follow on the next line).
    found: dict[tuple[int, int], str] = {}
    for pattern, kind, group in (
        (_STREET_SHAPE, _SHAPE, 0),
        (_LOCALITY_LINE, "locality", "part"),
        (_CAPITALISED_RUN, "capitalised", 0),
    ):
        for m in pattern.finditer(text):
            found.setdefault(m.span(group), kind)
    return [
        Span(start, end, _WEAK, text[start:end], 0.0, kind)
        for (start, end), kind in found.items()
        if end > start
    ]


def _touch(text: str, end: int, part: Span) -> bool:
    # Capitalised words run on an address only on its own line and without a comma: in
    # "12 Main Street, Bob said" Bob is not a locality.
    join = _SAME_LINE if part.detector == "capitalised" else _JOIN
    return join.fullmatch(text, end, part.start) is not None
