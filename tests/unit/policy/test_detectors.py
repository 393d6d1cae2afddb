"""Each PII detector's positives, and the near-misses it must not report."""

from __future__ import annotations

import pytest

from gateway.policy import detect


def _found(text: str, type_: str) -> list[str]:
    return [s.text for s in detect(text, types={type_})]


@pytest.mark.parametrize(
    "text, value",
    [
        ("write to jane.doe+work@mail.example.co.uk today", "jane.doe+work@mail.example.co.uk"),
        ("cc: ops@example.org.", "ops@example.org"),
    ],
)
def test_email_found(text: str, value: str) -> None:
    assert _found(text, "EMAIL") == [value]


def test_email_needs_a_domain_with_tld() -> None:
    assert _found("ping me @channel or user@localhost", "EMAIL") == []


@pytest.mark.parametrize(
    "text, value",
    [
        ("call +14155552671 now", "+14155552671"),
        ("office: +44 20 7946 0958", "+44 20 7946 0958"),
        ("Zurich +41 (0)69 979 80 58", "+41 (0)69 979 80 58"),
        ("my cell is (541) 714-1388", "(541) 714-1388"),
        ("dial 541.714.1388 ext. 42", "541.714.1388 ext. 42"),
        ("from abroad 001-541-714-1388", "001-541-714-1388"),
        ("Berlin 030 1234 5678", "030 1234 5678"),
    ],
)
def test_phone_number_formats_found(text: str, value: str) -> None:
    assert _found(text, "PHONE_NUMBER") == [value]


@pytest.mark.parametrize(
    "text",
    [
        "order number 5403926876 shipped",
        "the meeting is on 2024-03-15",
        "invoice dated 12/03/2024",
        "we sold 1 250 000 units",
        "pay with 4111 1111 1111 1111",
    ],
)
def test_phone_number_not_found_in_plain_numbers_dates_or_cards(text: str) -> None:
    assert _found(text, "PHONE_NUMBER") == []


def test_grouped_digits_count_as_phone_only_after_a_phone_word() -> None:
    assert _found("phone: 723 813 266", "PHONE_NUMBER") == ["723 813 266"]
    assert _found("we counted 723 813 266 grains", "PHONE_NUMBER") == []


@pytest.mark.parametrize(
    "value",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "5500005555555559", "378282246310005"],
)
def test_luhn_valid_card_with_known_prefix_found(value: str) -> None:
    assert _found(f"card {value} please", "CREDIT_CARD") == [value]


@pytest.mark.parametrize(
    "value",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "9111111111111111",  # unknown IIN (Luhn-valid)
        "12345678901234567890123",  # too long
    ],
)
def test_card_near_miss_not_found(value: str) -> None:
    assert _found(f"ref {value}", "CREDIT_CARD") == []


@pytest.mark.parametrize("value", ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000"])
def test_iban_with_valid_checksum_found(value: str) -> None:
    assert _found(f"pay to {value} by Friday", "IBAN") == [value]


def test_iban_with_bad_checksum_or_length_not_found() -> None:
    assert _found("pay to GB83 WEST 1234 5698 7654 32", "IBAN") == []
    assert _found("pay to DE8937040044053201300", "IBAN") == []


def test_lowercase_iban_found() -> None:
    assert _found("iban gb82west12345698765432", "IBAN") == ["gb82west12345698765432"]


def test_ssn_found() -> None:
    assert _found("SSN 123-45-6789 on file", "US_SSN") == ["123-45-6789"]


@pytest.mark.parametrize("value", ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-4567"])
def test_ssn_in_never_issued_range_not_found(value: str) -> None:
    assert _found(f"SSN {value}", "US_SSN") == []


def test_ssn_with_zero_serial_not_found() -> None:
    assert _found("SSN 123-45-0000", "US_SSN") == []


def test_bare_nine_digits_are_ssn_only_in_context() -> None:
    assert _found("my social security number is 123456789", "US_SSN") == ["123456789"]
    assert _found("tracking 123456789", "US_SSN") == []


@pytest.mark.parametrize(
    "text, value",
    [
        ("host 192.168.1.20 is down", "192.168.1.20"),
        ("from 8.8.8.8.", "8.8.8.8"),
        ("v6 2001:db8::8a2e:370:7334 up", "2001:db8::8a2e:370:7334"),
        ("mapped ::ffff:10.0.0.1 here", "::ffff:10.0.0.1"),
    ],
)
def test_ip_address_found(text: str, value: str) -> None:
    assert _found(text, "IP_ADDRESS") == [value]


@pytest.mark.parametrize(
    "text",
    ["bad 999.1.1.1", "version 1.2.3.4.5", "use std::vector here", "at 12:30:45 sharp"],
)
def test_ip_near_miss_not_found(text: str) -> None:
    assert _found(text, "IP_ADDRESS") == []


@pytest.mark.parametrize(
    "text, value",
    [
        ("I was born on 12 March 1985 in Leeds", "12 March 1985"),
        ("DOB: 03/12/1985", "03/12/1985"),
        ("date of birth is 1985-03-12.", "1985-03-12"),
    ],
)
def test_date_of_birth_found_after_a_birth_cue(text: str, value: str) -> None:
    assert _found(text, "DATE_OF_BIRTH") == [value]


def test_date_without_birth_cue_is_not_a_date_of_birth() -> None:
    assert _found("the invoice is due on 12 March 2025", "DATE_OF_BIRTH") == []


@pytest.mark.parametrize(
    "text, value",
    [
        (
            "ship to 1600 Pennsylvania Ave NW, Washington, DC 20500 asap",
            "1600 Pennsylvania Ave NW, Washington, DC 20500",
        ),
        ("she lives at 12 Timms Drive Suite 215.", "12 Timms Drive Suite 215"),
        ("Adresse: Hauptstraße 5a, Berlin", "Hauptstraße 5a"),
    ],
)
def test_street_address_found(text: str, value: str) -> None:
    assert _found(text, "STREET_ADDRESS") == [value]


def test_lowercase_phrase_with_number_is_not_an_address() -> None:
    assert _found("I walked 3 miles down the road", "STREET_ADDRESS") == []


def test_unknown_type_rejected() -> None:
    with pytest.raises(ValueError, match="EMAILS"):
        detect("x", types={"EMAILS"})


@pytest.mark.parametrize(
    "text, value",
    [
        ("send it to P.O. Box 1042 please", "P.O. Box 1042"),
        ("mail: PSC 1234, Box 5678 APO AE 09012 today", "PSC 1234, Box 5678 APO AE 09012"),
        ("Ufficio in Piazza Navona 45.", "Piazza Navona 45"),
        (
            "Address:\n77 Harbour Road\nWellington\nNew Zealand 6011\n\nThanks",
            "77 Harbour Road\nWellington\nNew Zealand 6011",
        ),
    ],
)
def test_street_address_other_forms_found(text: str, value: str) -> None:
    assert _found(text, "STREET_ADDRESS") == [value]


def test_address_tail_after_a_comma_needs_a_postal_code() -> None:
    assert _found("meet at 12 Main Street, Bob said", "STREET_ADDRESS") == ["12 Main Street"]


def test_urls_are_found_but_only_a_profile_that_names_them_acts() -> None:
    from gateway.policy.config import PolicyConfig, PolicyProfile
    from gateway.policy.engine import PolicyEngine

    text = "see https://www.example.org/people/jane?id=7, or www.example.com."
    assert _found(text, "URL") == ["https://www.example.org/people/jane?id=7", "www.example.com"]
    everything = PolicyProfile(pii={"*": "redact"})
    named = PolicyProfile(pii={"*": "redact", "URL": "redact"})
    engine = PolicyEngine(PolicyConfig(profiles={"default": everything, "urls": named}))
    assert engine.check([text], None).action == "allow"  # `*` does not cover URL
    assert engine.check([text], "urls").texts == ["see [URL_1], or [URL_2]."]


@pytest.mark.parametrize(
    "text, value",
    [
        ("address: 450 Præstevænget 15, København V", "450 Præstevænget 15, København V"),
        ("20789 Allika 46\n Suite 501\n Riisa", "20789 Allika 46\n Suite 501\n Riisa"),
    ],
)
def test_a_street_between_two_numbers_with_an_address_tail_is_found(text: str, value: str) -> None:
    assert _found(text, "STREET_ADDRESS") == [value]


@pytest.mark.parametrize("text", ["we moved 12 Boxes 4, Then left", "Windows 10 and Python 3"])
def test_two_numbers_around_a_word_without_an_address_tail_are_not_an_address(text: str) -> None:
    assert _found(text, "STREET_ADDRESS") == []


@pytest.mark.parametrize(
    "text, value",
    [
        ("Gregory Kovács\n233 Erzsébet tér 19.\nBudapest", "Erzsébet tér 19."),
        ("the office is at Kálmán Imre u. 12. Apt. 7", "Kálmán Imre u. 12. Apt. 7"),
        ("drop it at ul. Chrzanowska 61 tomorrow", "ul. Chrzanowska 61"),
        ("Our shop: Λεωφόρος Συγγρού 119 in Athens", "Λεωφόρος Συγγρού 119"),
    ],
)
def test_central_and_eastern_european_street_forms_are_found(text: str, value: str) -> None:
    assert any(value in found for found in _found(text, "STREET_ADDRESS"))


@pytest.mark.parametrize(
    "text, value",
    [
        (
            "send it to the corner of King Street and Queen Road?",
            "the corner of King Street and Queen Road",
        ),
        (
            "we met at the corner of 25 Dili Gianni Street and King Forges.",
            "the corner of 25 Dili Gianni Street and King Forges",
        ),
    ],
)
def test_a_street_corner_is_an_address(text: str, value: str) -> None:
    assert _found(text, "STREET_ADDRESS") == [value]


@pytest.mark.parametrize(
    "text", ["in the corner of the room and the hall", "the corner of Bob and me"]
)
def test_a_corner_without_two_place_names_is_not_an_address(text: str) -> None:
    assert _found(text, "STREET_ADDRESS") == []


@pytest.mark.parametrize(
    "text, value",
    [
        ("ZIP: 394 13", "394 13"),
        ("My zip code is 2371.", "2371"),
        ("postcode SW1A 1AA, London", "SW1A 1AA"),
        ("Zip Code: 90210, CA", "90210"),
        ("PLZ: 10115 Berlin", "10115"),
    ],
)
def test_a_labelled_postal_code_is_found(text: str, value: str) -> None:
    assert _found(text, "POSTAL_CODE") == [value]


@pytest.mark.parametrize(
    "text", ["the zip file is 12 MB", "zip code is unknown", "the cap is 12 inches", "call 2371"]
)
def test_a_number_without_a_postal_label_is_not_a_postal_code(text: str) -> None:
    assert _found(text, "POSTAL_CODE") == []


def test_a_military_ship_address_with_a_non_ascii_name_is_found() -> None:
    text = "please send it to USNS Sekerková FPO AA 65728?"
    assert _found(text, "STREET_ADDRESS") == ["USNS Sekerková FPO AA 65728"]
