"""Detectors for protected health information (HIPAA identifiers): medical record numbers,
health-plan and member ids, NPI and DEA numbers, and ages.

Where a format has a checksum it is checked (NPI: Luhn over ``80840`` + the number; DEA: its
weighted digit sum; the Medicare MBI: its character classes). Where it has none (record and
member numbers are each institution's own), a value is reported only after a context word
("MRN", "member ID", ...), and confidence says how much the format alone is worth: a
checksum-valid number with its context word scores highest, the bare format lowest, so a
profile's confidence threshold decides whether context is required.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.policy.financial import luhn_valid
from gateway.policy.spans import Span

_ID = r"(?P<id>(?=[A-Z0-9-]*\d)[A-Z0-9](?:[A-Z0-9-]{3,18}[A-Z0-9]))"
_GLUE = r"(?:\s*(?:number|num|no\.?|#|id)\b)?\s*(?:is|was|of)?\s*[:#=-]?\s*"

# A medical record number has no universal format: it needs its name right before it.
_MRN = re.compile(
    r"(?i)\b(?:mrn|medical\s+record(?:\s+(?:number|no\.?|#))?|med\.?\s*rec(?:ord)?\.?"
    r"|patient\s+(?:id|number|no\.?|#)|chart\s+(?:number|no\.?|#)|hospital\s+number"
    rf"|encounter\s+(?:id|number)){_GLUE}{_ID}(?![\w-])"
)

_ID_WORD = r"(?:id(?:entification)?|number|no\.?|#|card)"
# Words that name a plan id on their own, and broader ones that need "id"/"number" after them
# ("group 2024-Q3" is a meeting, "group number 88213" is a plan's).
_PLAN = re.compile(
    r"(?i)\b(?:(?:member|subscriber|beneficiary|enrollee|medicaid|medicare|mbi|hicn)"
    rf"(?:\s+{_ID_WORD}){{0,2}}"
    r"|(?:insured|policy(?:holder)?|group|health\s+plan|plan|insurance|bcbs)"
    rf"(?:\s+{_ID_WORD}){{1,2}}){_GLUE}{_ID}(?![\w-])"
)
# Medicare Beneficiary Identifier: 11 characters, C A AN N A AN N A A N N, letters without
# S, L, O, I, B, Z (CMS's published format); distinctive enough to count without context.
_MBI_LETTER = "[AC-HJKMNP-RT-Y]"
_MBI = re.compile(
    rf"(?<![\w-])[1-9]{_MBI_LETTER}[0-9{_MBI_LETTER[1:-1]}]\d-?{_MBI_LETTER}"
    rf"[0-9{_MBI_LETTER[1:-1]}]\d-?{_MBI_LETTER}{{2}}\d{{2}}(?![\w-])"
)

_MBI_CONTEXT = re.compile(r"(?i)\b(?:medicare|mbi|beneficiary|member)\b")

_NPI = re.compile(r"(?<![\w-])[12]\d{9}(?![\w-])")
_NPI_CONTEXT = re.compile(r"(?i)\b(?:npi|national\s+provider|provider|prescriber|physician)\b")

# DEA registration: a registrant-type letter, the registrant's initial (or 9), 7 digits.
_DEA = re.compile(r"(?<![\w-])(?P<id>[ABCDEFGHJKLMPRSTUX][A-Z9]\d{7})(?![\w-])")
_DEA_CONTEXT = re.compile(r"(?i)\b(?:dea|registration|prescriber|controlled)\b")

_AGE = re.compile(
    r"(?i)\b(?:(?P<a>\d{1,3})(?:\s*|-)(?:years?|yrs?|y)(?:\s*|-)(?:/\s*)?o(?:ld|\.)?\b"
    r"|(?P<b>\d{1,3})\s*y/o\b"
    r"|aged?\s*[:=]?\s*(?P<c>\d{1,3})\b(?!\s*(?:%|percent|days|weeks|months)))"
)

_CONTEXT_CHARS = 48


def _near(pattern: re.Pattern[str], text: str, start: int, end: int) -> bool:
    before = text[max(0, start - _CONTEXT_CHARS) : start]
    after = text[end : end + _CONTEXT_CHARS // 2]
    return bool(pattern.search(before) or pattern.search(after))


def npi_valid(number: str) -> bool:
    """The NPI check digit: Luhn over the number prefixed with ``80840`` (the card-issuer
    prefix the NPI standard assigns to US health)."""
    return len(number) == 10 and number.isdigit() and luhn_valid("80840" + number)


def dea_valid(number: str) -> bool:
    """The DEA check digit: (d1 + d3 + d5) + 2 * (d2 + d4 + d6), last digit equals d7."""
    digits = number[2:]
    if len(number) != 9 or not digits.isdigit():
        return False
    d = [int(c) for c in digits]
    return (d[0] + d[2] + d[4] + 2 * (d[1] + d[3] + d[5])) % 10 == d[6]


def detect_medical_record_numbers(text: str) -> Iterator[Span]:
    """Record numbers named as such ("MRN 00482913", "medical record #A-99812")."""
    for m in _MRN.finditer(text):
        start, end = m.span("id")
        yield Span(start, end, "MEDICAL_RECORD_NUMBER", m.group("id"), 0.9, "medical_record")


def detect_health_plan_ids(text: str) -> Iterator[Span]:
    """Member, subscriber and policy ids named as such, and Medicare MBIs by format."""
    for m in _PLAN.finditer(text):
        start, end = m.span("id")
        yield Span(start, end, "HEALTH_PLAN_ID", m.group("id"), 0.85, "health_plan_id")
    for m in _MBI.finditer(text):
        confident = _near(_MBI_CONTEXT, text, m.start(), m.end())
        yield Span(
            m.start(), m.end(), "HEALTH_PLAN_ID", m.group(), 0.95 if confident else 0.75, "mbi"
        )


def detect_npis(text: str) -> Iterator[Span]:
    """National Provider Identifiers: 10 digits starting 1 or 2 with a valid check digit.
    One random 10-digit number in ten passes the check, so without a context word ("NPI",
    "provider") the confidence stays low (0.4)."""
    for m in _NPI.finditer(text):
        if not npi_valid(m.group()):
            continue
        confidence = 0.95 if _near(_NPI_CONTEXT, text, m.start(), m.end()) else 0.4
        yield Span(m.start(), m.end(), "NPI", m.group(), confidence, "npi")


def detect_dea_numbers(text: str) -> Iterator[Span]:
    """DEA registration numbers with a valid check digit (0.95 next to "DEA", else 0.7)."""
    for m in _DEA.finditer(text):
        if not dea_valid(m.group("id")):
            continue
        confidence = 0.95 if _near(_DEA_CONTEXT, text, m.start(), m.end()) else 0.7
        yield Span(m.start(), m.end(), "DEA_NUMBER", m.group(), confidence, "dea_number")


def detect_ages(text: str) -> Iterator[Span]:
    """Ages stated as such ("79 year old", "45 y/o", "aged 31"); the number is the span.
    Ages over 89 are a HIPAA identifier on their own, so they score higher."""
    for m in _AGE.finditer(text):
        group = next(g for g in ("a", "b", "c") if m.group(g) is not None)
        start, end = m.span(group)
        value = int(m.group(group))
        if value > 125:
            continue
        confidence = 0.9 if value > 89 else 0.8
        yield Span(start, end, "AGE", m.group(group), confidence, "age")
