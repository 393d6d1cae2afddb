"""PHI detectors: checksums where a format has one, context words where it has none."""

from __future__ import annotations

import pytest

from gateway.policy import detect
from gateway.policy.config import PolicyConfig, PolicyProfile
from gateway.policy.engine import PolicyEngine
from gateway.policy.phi import dea_valid, npi_valid

VALID_NPI = "1234567893"  # the worked example of the NPI standard's check digit
VALID_DEA = "AB1234563"  # 1+3+5 + 2*(2+4+6) = 33 -> check digit 3


def _found(text: str, type_: str) -> list[tuple[str, float]]:
    return [(s.text, s.confidence) for s in detect(text, types={type_})]


def test_npi_check_digit_is_luhn_over_the_80840_prefix() -> None:
    assert npi_valid(VALID_NPI)
    assert not npi_valid("1234567890")
    assert not npi_valid("123456789")  # nine digits


def test_an_npi_next_to_its_name_is_confident_and_a_bare_one_is_not() -> None:
    assert _found(f"Referring provider NPI: {VALID_NPI}", "NPI") == [(VALID_NPI, 0.95)]
    assert _found(f"order {VALID_NPI} shipped", "NPI") == [(VALID_NPI, 0.4)]
    assert _found("NPI 1234567890", "NPI") == []  # wrong check digit


def test_dea_numbers_need_a_valid_check_digit() -> None:
    assert dea_valid(VALID_DEA) and not dea_valid("AB1234567")
    assert _found(f"Prescriber DEA #{VALID_DEA}.", "DEA_NUMBER") == [(VALID_DEA, 0.95)]
    assert _found("DEA #AB1234567.", "DEA_NUMBER") == []
    assert _found(f"ticket {VALID_DEA}", "DEA_NUMBER") == [(VALID_DEA, 0.7)]


@pytest.mark.parametrize(
    "text, value",
    [
        ("MRN: 00482913", "00482913"),
        ("Medical record number A-99812 on file", "A-99812"),
        ("patient ID 55-201-77", "55-201-77"),
    ],
)
def test_medical_record_numbers_are_found_by_their_name(text: str, value: str) -> None:
    assert [v for v, _ in _found(text, "MEDICAL_RECORD_NUMBER")] == [value]


def test_a_number_without_a_record_word_is_not_a_medical_record_number() -> None:
    assert _found("invoice 00482913 is due", "MEDICAL_RECORD_NUMBER") == []
    assert _found("MRN pending", "MEDICAL_RECORD_NUMBER") == []  # no digit: not an id


@pytest.mark.parametrize(
    "text, value",
    [
        ("Member ID: XJH123456789", "XJH123456789"),
        ("subscriber # 88213-01", "88213-01"),
        ("Medicaid ID 12345678", "12345678"),
        ("group number 0045521", "0045521"),
        ("Medicare: 1EG4-TE5-MK73", "1EG4-TE5-MK73"),  # CMS's published example MBI
    ],
)
def test_health_plan_ids_are_found(text: str, value: str) -> None:
    assert value in [v for v, _ in _found(text, "HEALTH_PLAN_ID")]


def test_broad_words_need_an_id_word_to_name_a_plan_id() -> None:
    assert _found("the group 2024-Q3 meeting", "HEALTH_PLAN_ID") == []
    assert _found("plan 2024 rollout", "HEALTH_PLAN_ID") == []


def test_ages_are_found_and_high_ages_score_higher() -> None:
    assert _found("This 79 year old female complained of pain", "AGE") == [("79", 0.8)]
    assert _found("a 92-year-old man", "AGE") == [("92", 0.9)]
    assert _found("45 y/o M", "AGE") == [("45", 0.8)]
    assert _found("aged 10 percent of the time", "AGE") == []


def test_dates_of_birth_in_clinical_notes() -> None:
    assert [v for v, _ in _found("Pt DOB: 03/14/1961, MRN 00482913", "DATE_OF_BIRTH")] == [
        "03/14/1961"
    ]


def test_the_phi_group_key_applies_to_every_phi_type() -> None:
    profile = PolicyProfile(pii={"*": "monitor", "phi": "redact"})
    engine = PolicyEngine(PolicyConfig(profiles={"default": profile}))
    verdict = engine.check([f"MRN 00482913, provider NPI {VALID_NPI}"], None)
    assert verdict.action == "redact"
    assert verdict.texts == ["MRN [MEDICAL_RECORD_NUMBER_1], provider NPI [NPI_1]"]


def test_a_bare_npi_is_below_the_packaged_operating_point() -> None:
    profile = PolicyProfile(pii={"NPI": "block"})
    engine = PolicyEngine(PolicyConfig(profiles={"default": profile}))
    assert engine.check([f"order {VALID_NPI} shipped"], None).action == "allow"
    assert engine.check([f"NPI {VALID_NPI}"], None).action == "block"


def test_a_profile_threshold_overrides_the_packaged_one() -> None:
    strict = PolicyProfile(pii={"DEA_NUMBER": "block"}, min_confidence={"DEA_NUMBER": 0.9})
    engine = PolicyEngine(PolicyConfig(profiles={"default": strict}))
    assert engine.check([f"ticket {VALID_DEA}"], None).action == "allow"  # 0.7 < 0.9
    verdict = engine.check([f"DEA {VALID_DEA}"], None)
    assert verdict.action == "block"
    (decision,) = verdict.decisions
    assert decision.score == 0.95 and decision.threshold == 0.9
