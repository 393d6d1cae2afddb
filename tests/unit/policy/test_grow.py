"""Spans grown over what belongs to them (titles, times, address blocks), names that a label
announces, relative dates that name no one, and phone numbers labelled after the digits."""

from __future__ import annotations

import pytest

from gateway.policy.detection import detect
from gateway.policy.entities import EntityRecognizer
from gateway.policy.grow import grow
from gateway.policy.names import detect_labelled_names
from gateway.policy.pii import detect_phone_numbers
from gateway.policy.spans import Span


def _span(text: str, value: str, kind: str) -> Span:
    start = text.index(value)
    return Span(start, start + len(value), kind, value, 0.8, "test")


def _texts(text: str, spans: list[Span], kind: str) -> list[str]:
    return [text[s.start : s.end] for s in spans if s.type == kind]


def test_a_title_before_a_name_is_part_of_it() -> None:
    text = "Please forward this to Dr. Ingrid Halvorsen by Friday."
    grown = grow(text, [_span(text, "Ingrid Halvorsen", "PERSON")], {"PERSON"})
    assert _texts(text, grown, "PERSON") == ["Dr. Ingrid Halvorsen"]


def test_a_word_that_only_ends_like_a_title_is_left_alone() -> None:
    text = "See the OCMr Ingrid report."
    grown = grow(text, [_span(text, "Ingrid", "PERSON")], {"PERSON"})
    assert _texts(text, grown, "PERSON") == ["Ingrid"]


def test_the_time_after_a_date_is_part_of_it() -> None:
    text = "Admitted 2024-03-09 14:22:05 via the emergency room."
    grown = grow(text, [_span(text, "2024-03-09", "DATE_TIME")], {"DATE_TIME"})
    assert _texts(text, grown, "DATE_TIME") == ["2024-03-09 14:22:05"]


def test_an_address_block_is_covered_line_by_line() -> None:
    text = (
        "Kind regards,\nMarta Kowalczyk\n\n"
        "4411 Birchwood Lane\nSuite 1207\nSPRINGVALE\nAustralia 3171\n\nSent from my phone"
    )
    street = _span(text, "Birchwood Lane", "STREET_ADDRESS")
    grown = grow(text, [street, _span(text, "Marta Kowalczyk", "PERSON")], {"STREET_ADDRESS"})
    assert _texts(text, grown, "STREET_ADDRESS") == [
        "4411 Birchwood Lane",
        "Suite 1207",
        "SPRINGVALE",
        "Australia 3171",
    ]
    # The name above the block stays a name; the line after the blank one is not taken.
    assert _texts(text, grown, "PERSON") == ["Marta Kowalczyk"]


def test_a_street_shaped_line_joins_the_unit_below_it() -> None:
    text = "Ship to:\n> 902 Kossuth tér 7.\n> Apt. 14\n> Győr"
    grown = grow(text, [], {"STREET_ADDRESS"})
    assert _texts(text, grown, "STREET_ADDRESS") == ["902 Kossuth tér 7", "Apt. 14", "Győr"]


def test_shapes_alone_are_not_addresses() -> None:
    # Numbers around words and capitalised lines are everywhere; without a street or a unit
    # line beside them they stay what they were.
    text = "Release 2 Beta 3\nTeam Meeting\nBerlin"
    place = _span(text, "Berlin", "LOCATION")
    grown = grow(text, [place], {"STREET_ADDRESS", "LOCATION"})
    assert [(s.type, s.text) for s in grown] == [("LOCATION", "Berlin")]


def test_a_postcode_after_a_street_is_taken_in() -> None:
    text = "Send it to 18 Harbour Road, Port Elliot SA 5212 please."
    spans = detect(text, types={"STREET_ADDRESS"})
    assert [s.text for s in spans] == ["18 Harbour Road, Port Elliot SA 5212"]


def test_names_announced_by_a_label_are_found() -> None:
    text = "Ticket 5521\nName: eitan marom\nPriority: high\nThanks, my name is Priya Raman."
    names = [s.text for s in detect_labelled_names(text)]
    assert names == ["eitan marom", "Priya Raman"]


def test_a_label_without_a_name_after_it_finds_nothing() -> None:
    assert list(detect_labelled_names("Name:\nPriority: high\nmy name is")) == []


@pytest.mark.parametrize(
    "text, kept",
    [
        ("We met last week to talk it over.", []),
        ("The contract runs for a couple of months.", []),
        ("She is a 35-year-old engineer.", []),
        ("He was born on 12 March 1987 in Oslo.", ["12 March 1987"]),
    ],
)
def test_only_points_in_time_are_dates_that_name_someone(text: str, kept: list[str]) -> None:
    pytest.importorskip("spacy", reason="NER needs the cpu extra")
    spans = detect(text, types={"DATE_TIME"}, entities=EntityRecognizer())
    assert [s.text for s in spans] == kept


def test_digit_groups_labelled_after_as_a_line_of_a_signature_are_phones() -> None:
    text = "Jo Lindqvist\n512 880 407 office\n2024 was a good year for 300 500 units"
    assert [s.text for s in detect_phone_numbers(text)] == ["512 880 407"]


def test_a_bracketed_short_area_code_is_a_phone() -> None:
    assert [s.text for s in detect_phone_numbers("Reach me on (03) 9421 7780.")] == [
        "(03) 9421 7780"
    ]
