"""Detectors for contact and personal data: e-mail, phone numbers, IP addresses and dates of
birth (street addresses live in ``address``).

Patterns are precompiled at import; each detector first checks a cheap necessary condition
(an ``@`` for e-mail, a digit for phones) so that text without candidates costs almost
nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from gateway.policy.spans import Span

_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}\b"
)


def detect_emails(text: str) -> Iterator[Span]:
    """E-mail addresses (local part @ dotted domain with an alphabetic TLD)."""
    if "@" not in text:
        return
    for m in _EMAIL.finditer(text):
        yield Span(m.start(), m.end(), "EMAIL", m.group(), 0.95, "email")


# Alternatives, most specific first. Every alternative needs a structural cue (a leading
# "+", parentheses, or separators between digit groups), so that bare digit runs, which are
# more often order numbers or amounts, are not reported.
_PHONE = re.compile(
    r"(?<![\w+/.-])(?:"
    # E.164 and international with separators: +41 (0)69 979 80 58, +44 20 7946 0958
    r"\+[1-9]\d{0,2}(?:[ .-]?\(0\))?(?:[ .-]?\(?\d{1,4}\)?)(?:[ .-]?\d{2,4}){1,5}"
    # International access prefix: 001-541-714-1388
    r"|00[1-9]\d{0,2}[ .-]\d{1,4}(?:[ .-]\d{2,4}){1,4}"
    # North American: (541) 714-1388, 541-714-1388, 541.714.1388
    r"|\(?[2-9]\d{2}\)?[ .-]?[2-9]\d{2}[.-]\d{4}"
    r"|\([2-9]\d{2}\)[ ]?[2-9]\d{2}[ ]\d{4}"
    # A bracketed area code of any length, then groups: (08) 8747 6301, (37) 788-063
    r"|\(\d{1,4}\)[ ]?\d{2,4}(?:[ .-]\d{2,4}){1,3}"
    # National trunk-prefixed formats: 0341 8387176, 079 2718 1155, 0688 843 79 56
    r"|0\d{1,4}[ .-]\d{2,8}(?:[ .-]\d{2,4}){0,3}"
    # Grouped national numbers without trunk prefix: 723 813 266, 780 6326
    r"|[1-9]\d{1,3}[ ]\d{3,4}(?:[ ]\d{2,4}){0,2}"
    r")(?:\s?(?:x|ext\.?|extension)\s?\d{1,5})?(?![\w/]|[.-]\d)"
)
# The grouped-digit alternatives (no "+", no trunk "0") are ambiguous with amounts and
# counts; they are kept only when a phone word appears shortly before, or a signature's line
# label right after ("416 60 039 office").
_PHONE_CONTEXT = re.compile(
    r"(?i)\b(?:phone|tel|telephone|mobile|cell|call|fax|number|contact|reach|dial|text|sms"
    r"|whatsapp)\b"
)
_PHONE_LABEL_AFTER = re.compile(r"(?i)[ \t]*-?[ \t]*(?:office|fax|mobile|cell|home|work|direct)\b")
_DATE_LIKE = re.compile(r"^\d{1,4}[-./]\d{1,2}[-./]\d{1,4}$")


def _digit_count(s: str) -> int:
    return sum(ch.isdigit() for ch in s)


def detect_phone_numbers(text: str) -> Iterator[Span]:
    """Phone numbers in international (E.164, ``+CC`` grouped) and common national formats.

    Dates, digit runs without any phone structure, and runs of more than 15 digits (card
    numbers) are not reported.
    """
    for m in _PHONE.finditer(text):
        raw = m.group()
        digits = _digit_count(raw.split("x")[0].split("ext")[0])
        if not 7 <= digits <= 15 or _DATE_LIKE.match(raw):
            continue
        if raw.startswith("+"):
            confidence = 0.9 if digits >= 8 else 0.6
        elif raw.startswith(("(", "00")) or re.match(r"\d{3}[.-]\d{3}[.-]\d{4}", raw):
            confidence = 0.85
        elif raw.startswith("0"):
            confidence = 0.7
        else:
            # Bare groups of digits ("723 813 266"): only with a phone word nearby.
            before = _PHONE_CONTEXT.search(text, max(0, m.start() - 40), m.start())
            if not before and not _PHONE_LABEL_AFTER.match(text, m.end()):
                continue
            confidence = 0.6
        yield Span(m.start(), m.end(), "PHONE_NUMBER", raw, confidence, "phone_number")


# Dotted quads not part of a longer dotted run (version strings such as 1.2.3.4.5).
_IPV4 = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
# Loose IPv6 candidates, validated by ipaddress; an optional trailing dotted quad covers
# IPv4-mapped forms (::ffff:10.0.0.1).
_IPV6 = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?"
    r"(?:%\w+)?(?![\w:]|\.\d)"
)


def detect_ip_addresses(text: str) -> Iterator[Span]:
    """IPv4 addresses whose octets are all 0-255, and valid IPv6 addresses."""
    if "." in text:
        for m in _IPV4.finditer(text):
            try:
                ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            yield Span(m.start(), m.end(), "IP_ADDRESS", m.group(), 0.9, "ip_address")
    if "::" in text or text.count(":") >= 7:
        for m in _IPV6.finditer(text):
            raw = m.group()
            # "std::vector" or "a::b" parse as IPv6 but are code; real addresses in prose
            # almost always carry a digit and more than one group.
            if not any(ch.isdigit() for ch in raw) or raw.count(":") < 2 or len(raw) < 6:
                continue
            try:
                ipaddress.IPv6Address(raw.split("%")[0])
            except ValueError:
                continue
            yield Span(m.start(), m.end(), "IP_ADDRESS", raw, 0.85, "ip_address")


_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?"
)
_DATE = (
    r"(?:\d{4}-\d{1,2}-\d{1,2}"
    r"|\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}"
    rf"|{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}})"
)
# A date is a date of birth only when the text says so right before it.
_DOB = re.compile(
    r"(?i)\b(?:born(?:\s+on)?|d\.?o\.?b\.?|date\s+of\s+birth|birth\s*date|birthday"
    r"|geboren(?:\s+am)?|n[ée]e?\s+le)"
    rf"(?:\s+(?:is|was|of))?\s*[:=-]?\s*(?P<date>{_DATE})\b"
)


# Web addresses: a scheme, or "www.", then a dotted host with an alphabetic TLD, then a path.
_URL = re.compile(
    r"(?<![\w@/.-])(?:(?:https?|ftp)://|www\.)"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
    r"(?::\d{2,5})?(?:/[^\s<>\"'`)\]]*)?"
)


def detect_urls(text: str) -> Iterator[Span]:
    """Web addresses with a scheme (0.9) or a ``www.`` host (0.8). A URL can name a person
    (a profile page, a personal site) but is most often not personal data, so no profile gets
    this type through ``*``: it must be named."""
    if "://" not in text and "www." not in text:
        return
    for m in _URL.finditer(text):
        value = m.group().rstrip(".,;:!?")
        confidence = 0.8 if value.startswith("www.") else 0.9
        yield Span(m.start(), m.start() + len(value), "URL", value, confidence, "url")


def detect_dates_of_birth(text: str) -> Iterator[Span]:
    """Dates introduced by a birth cue ("born on", "DOB:", "date of birth"); other dates are
    not personal data on their own and are not reported."""
    for m in _DOB.finditer(text):
        start, end = m.span("date")
        yield Span(start, end, "DATE_OF_BIRTH", m.group("date"), 0.9, "date_of_birth")
