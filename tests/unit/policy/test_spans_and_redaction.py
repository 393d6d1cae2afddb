"""Overlap resolution, redaction consistency and the restore round-trip."""

from __future__ import annotations

from gateway.policy import Span, detect, redact, resolve_overlaps, restore


def _span(start: int, end: int, type_: str, confidence: float) -> Span:
    return Span(start, end, type_, "x" * (end - start), confidence, "test")


def test_longer_span_wins_an_overlap() -> None:
    long, short = _span(0, 20, "STREET_ADDRESS", 0.6), _span(5, 12, "PHONE_NUMBER", 0.9)
    assert resolve_overlaps([short, long]) == [long]


def test_more_confident_span_wins_an_overlap_of_equal_length() -> None:
    a, b = _span(0, 10, "US_SSN", 0.6), _span(0, 10, "PHONE_NUMBER", 0.85)
    assert resolve_overlaps([a, b]) == [b]


def test_disjoint_spans_all_kept_in_text_order() -> None:
    a, b = _span(10, 12, "EMAIL", 0.9), _span(0, 5, "EMAIL", 0.9)
    assert resolve_overlaps([a, b]) == [b, a]


def test_detect_returns_connection_password_not_the_host_inside_it() -> None:
    spans = detect("mysql://root:pw1234@10.0.0.5/db")
    assert [s.type for s in spans] == ["PASSWORD", "IP_ADDRESS"]


def test_same_value_gets_same_placeholder() -> None:
    text = "mail a@x.io, then b@y.io, then a@x.io again"
    result = redact(text, detect(text))
    assert result.text == "mail [EMAIL_1], then [EMAIL_2], then [EMAIL_1] again"
    assert result.mapping == {"[EMAIL_1]": "a@x.io", "[EMAIL_2]": "b@y.io"}


def test_placeholders_numbered_per_type() -> None:
    text = "a@x.io called +44 20 7946 0958"
    assert redact(text, detect(text)).text == "[EMAIL_1] called [PHONE_NUMBER_1]"


def test_restore_round_trip() -> None:
    text = "SSN 123-45-6789, card 4111 1111 1111 1111, mail a@x.io"
    redacted = redact(text, detect(text))
    assert "123-45-6789" not in redacted.text
    assert restore(redacted.text, redacted.mapping) == text


def test_restore_fills_placeholders_in_a_reworded_answer() -> None:
    redacted = redact("write to a@x.io", detect("write to a@x.io"))
    answer = "Sure, I will write to [EMAIL_1] and keep [EMAIL_9] as it is."
    assert restore(answer, redacted.mapping) == (
        "Sure, I will write to a@x.io and keep [EMAIL_9] as it is."
    )


def test_redact_without_spans_returns_text_unchanged() -> None:
    assert redact("nothing here", []).text == "nothing here"


def test_the_audit_redactor_replaces_every_detected_value() -> None:
    from gateway.policy.redaction import redact_pii

    text = "Card 4111 1111 1111 1111, mail bob@example.org, again bob@example.org"
    assert redact_pii(text) == "Card [CREDIT_CARD_1], mail [EMAIL_1], again [EMAIL_1]"
