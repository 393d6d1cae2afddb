"""The ``detect`` entry point: normalises the text, runs the selected detectors, maps their
spans back to the raw text, and resolves overlaps.

Span types come in four groups, each also a key of a profile's ``pii`` rules:

* personal data found by patterns (``PII_TYPES``), covered by ``*``;
* secrets (``CREDENTIAL_TYPES``), key ``credentials``, and covered by ``*``;
* health information (``PHI_TYPES``), key ``phi``, and covered by ``*``;
* named entities from the NER model (``ENTITY_TYPES``), key ``entities``: *not* covered by
  ``*``, because each one costs a model run; a profile names them to turn NER on.

``URL`` is found by pattern but, like the entity types, is not covered by ``*`` (``OPT_IN_TYPES``):
links are in most prompts and are rarely personal data, so a profile names the type to act on it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from gateway.policy.address import detect_postal_codes, detect_street_addresses
from gateway.policy.credentials import detect_credentials
from gateway.policy.entities import ENTITY_TYPES, EntityRecognizer
from gateway.policy.financial import detect_credit_cards, detect_ibans, detect_us_ssns
from gateway.policy.grow import grow
from gateway.policy.names import detect_labelled_names
from gateway.policy.normalize import Normalized, normalize
from gateway.policy.phi import (
    detect_ages,
    detect_dea_numbers,
    detect_health_plan_ids,
    detect_medical_record_numbers,
    detect_npis,
)
from gateway.policy.pii import (
    detect_dates_of_birth,
    detect_emails,
    detect_ip_addresses,
    detect_phone_numbers,
    detect_urls,
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
        "POSTAL_CODE",
        "DATE_OF_BIRTH",
        "URL",
    }
)
PHI_TYPES: frozenset[str] = frozenset(
    {"MEDICAL_RECORD_NUMBER", "HEALTH_PLAN_ID", "NPI", "DEA_NUMBER", "AGE"}
)
PATTERN_TYPES: frozenset[str] = PII_TYPES | CREDENTIAL_TYPES | PHI_TYPES
ALL_TYPES: frozenset[str] = PATTERN_TYPES | ENTITY_TYPES
OPT_IN_TYPES: frozenset[str] = ENTITY_TYPES | {"URL"}  # not covered by a rule's "*"
GROUPS: dict[str, frozenset[str]] = {
    "credentials": CREDENTIAL_TYPES,
    "phi": PHI_TYPES,
    "entities": ENTITY_TYPES,
}


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
    Detector("postal_code", frozenset({"POSTAL_CODE"}), detect_postal_codes),
    Detector("date_of_birth", frozenset({"DATE_OF_BIRTH"}), detect_dates_of_birth),
    Detector("url", frozenset({"URL"}), detect_urls),
    Detector("credentials", CREDENTIAL_TYPES, detect_credentials),
    Detector("medical_record", frozenset({"MEDICAL_RECORD_NUMBER"}), detect_medical_record_numbers),
    Detector("health_plan_id", frozenset({"HEALTH_PLAN_ID"}), detect_health_plan_ids),
    Detector("npi", frozenset({"NPI"}), detect_npis),
    Detector("dea_number", frozenset({"DEA_NUMBER"}), detect_dea_numbers),
    Detector("age", frozenset({"AGE"}), detect_ages),
)


def detect(
    text: str,
    *,
    types: Collection[str] | None = None,
    min_confidence: float | Mapping[str, float] = 0.0,
    entities: EntityRecognizer | None = None,
    normalized: Normalized | None = None,
) -> list[Span]:
    """Find PII, PHI and secrets in ``text``: non-overlapping spans sorted by start, with
    offsets and values of the *raw* text (detectors read its normalised form, see
    ``gateway.policy.normalize``, so a value disguised by invisible or look-alike characters
    is found and its raw characters, the invisible ones included, are what a span covers).

    ``types`` restricts the result to those span types (``None``: every type a rule's ``*``
    covers, i.e. all but ``OPT_IN_TYPES``; the entity types need ``entities``, the NER model,
    and are skipped without it); an unknown
    type name raises ``ValueError`` so that a typo in a policy does not silently disable a
    check. ``min_confidence`` is one floor, or one per span type (types not in the mapping
    keep everything). ``normalized`` is ``normalize(text)`` when the caller already has it.
    """
    selected = PATTERN_TYPES - OPT_IN_TYPES if types is None else frozenset(types)
    unknown = selected - ALL_TYPES
    if unknown:
        raise ValueError(f"unknown span types: {sorted(unknown)}")
    view = normalized if normalized is not None else normalize(text)
    seen = view.text
    candidates: list[Span] = []
    for detector in DETECTORS:
        if detector.types & selected:
            candidates.extend(s for s in detector.find(seen) if s.type in selected)
    wanted_entities = selected & ENTITY_TYPES
    if entities is not None and wanted_entities:
        candidates.extend(entities.find(seen, wanted_entities))
        if "PERSON" in wanted_entities:
            candidates.extend(detect_labelled_names(seen))
    if isinstance(min_confidence, Mapping):
        floors = min_confidence
        kept = [s for s in candidates if s.confidence >= floors.get(s.type, 0.0)]
    else:
        kept = [s for s in candidates if s.confidence >= min_confidence]
    kept = grow(seen, kept, selected)
    if view.changed:
        kept = [_to_raw(s, view) for s in kept]
    return resolve_overlaps(kept)


def _to_raw(span: Span, view: Normalized) -> Span:
    start, end = view.to_raw(span.start, span.end)
    return replace(span, start=start, end=end, text=view.raw[start:end])
