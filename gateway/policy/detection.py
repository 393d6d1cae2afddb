"""The ``detect`` entry point: runs the selected detectors and resolves overlaps."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass

from gateway.policy.address import detect_street_addresses
from gateway.policy.credentials import detect_credentials
from gateway.policy.financial import detect_credit_cards, detect_ibans, detect_us_ssns
from gateway.policy.pii import (
    detect_dates_of_birth,
    detect_emails,
    detect_ip_addresses,
    detect_phone_numbers,
)
from gateway.policy.spans import Span, resolve_overlaps

DetectorFn = Callable[[str], Iterable[Span]]

CREDENTIAL_TYPES: frozenset[str] = frozenset(
    {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_KEY",
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GITHUB_TOKEN",
        "SLACK_TOKEN",
        "GOOGLE_API_KEY",
        "PRIVATE_KEY",
        "JWT",
        "PASSWORD",
        "SECRET",
    }
)
PII_TYPES: frozenset[str] = frozenset(
    {
        "EMAIL",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN",
        "US_SSN",
        "IP_ADDRESS",
        "STREET_ADDRESS",
        "DATE_OF_BIRTH",
    }
)
ALL_TYPES: frozenset[str] = PII_TYPES | CREDENTIAL_TYPES


@dataclass(frozen=True, slots=True)
class Detector:
    """A named detector and the span types it can produce (used to skip it when none of
    its types is selected)."""

    name: str
    types: frozenset[str]
    find: DetectorFn


DETECTORS: tuple[Detector, ...] = (
    Detector("email", frozenset({"EMAIL"}), detect_emails),
    Detector("phone_number", frozenset({"PHONE_NUMBER"}), detect_phone_numbers),
    Detector("credit_card", frozenset({"CREDIT_CARD"}), detect_credit_cards),
    Detector("iban", frozenset({"IBAN"}), detect_ibans),
    Detector("us_ssn", frozenset({"US_SSN"}), detect_us_ssns),
    Detector("ip_address", frozenset({"IP_ADDRESS"}), detect_ip_addresses),
    Detector("street_address", frozenset({"STREET_ADDRESS"}), detect_street_addresses),
    Detector("date_of_birth", frozenset({"DATE_OF_BIRTH"}), detect_dates_of_birth),
    Detector("credentials", CREDENTIAL_TYPES, detect_credentials),
)


def detect(
    text: str, *, types: Collection[str] | None = None, min_confidence: float = 0.0
) -> list[Span]:
    """Find PII and secrets in ``text``: non-overlapping spans sorted by start.

    ``types`` restricts the result to those span types (``None``: all of ``ALL_TYPES``);
    an unknown type name raises ``ValueError`` so that a typo in a policy does not silently
    disable a check. Overlapping candidates are resolved by ``resolve_overlaps``.
    """
    selected = ALL_TYPES if types is None else frozenset(types)
    unknown = selected - ALL_TYPES
    if unknown:
        raise ValueError(f"unknown span types: {sorted(unknown)}")
    candidates: list[Span] = []
    for detector in DETECTORS:
        if detector.types & selected:
            candidates.extend(
                s
                for s in detector.find(text)
                if s.type in selected and s.confidence >= min_confidence
            )
    return resolve_overlaps(candidates)
