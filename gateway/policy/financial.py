"""Detectors for payment and identity numbers: credit cards, IBANs and US SSNs.

Each candidate found by a loose pattern is then validated by its checksum or number rules,
so that order numbers, phone numbers and other digit runs are not reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from gateway.policy.spans import Span

# A digit run of 13-19 digits, optionally grouped by single spaces or dashes; the
# look-arounds stop it from starting or ending inside a longer number or identifier.
_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-]|[ -]\d)")

# (prefix range low, high, allowed lengths): issuer identification numbers of the major
# networks. A Luhn-valid number outside these is more likely an account or order number.
_IIN_RANGES: tuple[tuple[int, int, frozenset[int]], ...] = (
    (4, 4, frozenset({13, 16, 19})),  # Visa
    (51, 55, frozenset({16})),  # Mastercard
    (2221, 2720, frozenset({16})),  # Mastercard 2-series
    (34, 34, frozenset({15})),  # American Express
    (37, 37, frozenset({15})),
    (300, 305, frozenset({14, 16, 17, 18, 19})),  # Diners Club
    (36, 36, frozenset({14, 16, 17, 18, 19})),
    (38, 39, frozenset({14, 16, 17, 18, 19})),
    (6011, 6011, frozenset({16, 17, 18, 19})),  # Discover
    (644, 649, frozenset({16, 17, 18, 19})),
    (65, 65, frozenset({16, 17, 18, 19})),
    (3528, 3589, frozenset({16, 17, 18, 19})),  # JCB
    (2131, 2131, frozenset({15})),  # JCB, legacy 15-digit
    (1800, 1800, frozenset({15})),
    (62, 62, frozenset({16, 17, 18, 19})),  # UnionPay
    (50, 50, frozenset({13, 14, 15, 16, 17, 18, 19})),  # Maestro
    (56, 69, frozenset({13, 14, 15, 16, 17, 18, 19})),
)


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn (mod 10) check."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _known_iin(digits: str) -> bool:
    for low, high, lengths in _IIN_RANGES:
        width = len(str(low))
        if low <= int(digits[:width]) <= high and len(digits) in lengths:
            return True
    return False


def detect_credit_cards(text: str) -> Iterator[Span]:
    """Card numbers of 13-19 digits that pass Luhn and start with a known IIN."""
    for m in _CARD.finditer(text):
        raw = m.group()
        digits = raw.replace(" ", "").replace("-", "")
        if not luhn_valid(digits) or not _known_iin(digits):
            continue
        # Mixed separators ("4111 1111-1111 1111") are unusual for a card.
        confidence = 0.8 if (" " in raw and "-" in raw) else 0.95
        yield Span(m.start(), m.end(), "CREDIT_CARD", raw, confidence, "credit_card")


# IBAN length per country (ISO 13616 registry).
_IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip

# Country code, check digits, then 11-30 alphanumerics optionally grouped by spaces.
_IBAN = re.compile(r"\b[A-Za-z]{2}\d{2}(?:[ ]?[A-Za-z0-9]){11,30}\b")


def iban_valid(iban: str) -> bool:
    """True when ``iban`` (no separators) has its country's length and passes mod-97."""
    iban = iban.upper()
    if _IBAN_LENGTHS.get(iban[:2]) != len(iban):
        return False
    rearranged = iban[4:] + iban[:4]
    numeric = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(numeric) % 97 == 1


def detect_ibans(text: str) -> Iterator[Span]:
    """IBANs with the right length for their country and a valid mod-97 checksum.

    The pattern may run past the IBAN into a following word; the candidate is cut to the
    country's length (counting characters, not spaces) before it is checked.
    """
    for m in _IBAN.finditer(text):
        length = _IBAN_LENGTHS.get(m.group()[:2].upper())
        if length is None:
            continue
        raw = m.group()
        taken = 0
        end = 0
        for i, ch in enumerate(raw):
            if ch != " ":
                taken += 1
            if taken == length:
                end = i + 1
                break
        if not end:
            continue
        # The cut must fall on a boundary: not in the middle of an alphanumeric group.
        if end < len(raw) and raw[end] != " ":
            continue
        candidate = raw[:end]
        if iban_valid(candidate.replace(" ", "")):
            yield Span(m.start(), m.start() + end, "IBAN", candidate, 0.95, "iban")


# Area 000, 666 and 9xx, group 00 and serial 0000 are never issued.
_SSN_DELIMITED = re.compile(
    r"(?<![\w-])(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}(?![\w-])"
)
_SSN_BARE = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}(?!00)\d{2}(?!0000)\d{4}(?![\w-])")
# A bare nine-digit run is an SSN only when the text says so just before it.
_SSN_CONTEXT = re.compile(r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\b")


def detect_us_ssns(text: str) -> Iterator[Span]:
    """US social security numbers in ``AAA-GG-SSSS`` form, or bare nine digits after "SSN"."""
    for m in _SSN_DELIMITED.finditer(text):
        # Space-separated 3-2-4 digits are also a common phone layout: lower confidence.
        confidence = 0.85 if m.group(1) == "-" else 0.6
        yield Span(m.start(), m.end(), "US_SSN", m.group(), confidence, "us_ssn")
    if not _SSN_CONTEXT.search(text):
        return
    for m in _SSN_BARE.finditer(text):
        if _SSN_CONTEXT.search(text, max(0, m.start() - 40), m.start()):
            yield Span(m.start(), m.end(), "US_SSN", m.group(), 0.75, "us_ssn")
