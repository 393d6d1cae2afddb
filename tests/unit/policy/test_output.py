"""Output filtering: whole answers and streams with a hold-back window."""

from __future__ import annotations

import pytest

from gateway.policy.config import PolicyProfile
from gateway.policy.output import OutputBlocked, OutputFilter

PROFILE = PolicyProfile(output={"EMAIL": "redact", "US_SSN": "block"}, hold_back_chars=32)


def _stream(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def test_a_value_split_across_chunks_is_redacted_whole() -> None:
    answer = "Contact ana@example.org for details, or ana@example.org again. Thanks a lot!"
    output = OutputFilter(PROFILE)
    released = [output.feed(piece) for piece in _stream(answer, 3)] + [output.finish()]
    text = "".join(released)
    assert text == "Contact [EMAIL_1] for details, or [EMAIL_1] again. Thanks a lot!"
    assert all("@" not in piece for piece in released)


def test_text_is_held_back_until_it_is_safe_then_released() -> None:
    output = OutputFilter(PROFILE)
    assert output.feed("short") == ""  # within the hold-back window
    assert output.finish() == "short"


def test_a_blocking_value_stops_the_answer_before_any_of_it_is_released() -> None:
    output = OutputFilter(PROFILE)
    released = ""
    with pytest.raises(OutputBlocked, match=r"output\.US_SSN"):
        for piece in _stream("Your number is 123-45-6789, keep it safe.", 2):
            released += output.feed(piece)
    assert "123" not in released


def test_decisions_name_each_rule_once() -> None:
    output = OutputFilter(PROFILE)
    output.feed("a@example.org b@example.org c@example.org" + " " * 40)
    output.finish()
    assert [d.rule for d in output.decisions] == ["output.EMAIL"]


def test_placeholders_split_across_chunks_are_restored() -> None:
    profile = PolicyProfile(output={}, restore_redacted=True, hold_back_chars=16)
    output = OutputFilter(profile, restore={"[EMAIL_1]": "ana@example.org"})
    answer = "Sure, I will write to [EMAIL_1] today, and copy [EMAIL_1] as well."
    text = "".join(output.feed(piece) for piece in _stream(answer, 4)) + output.finish()
    assert text == answer.replace("[EMAIL_1]", "ana@example.org")


def test_invisible_padding_cannot_push_half_a_value_out_of_the_hold_back() -> None:
    output = OutputFilter(PROFILE)
    released = output.feed("mail ana@exa") + output.feed("\u200b" * 200)
    released += output.feed("mple.org now") + output.finish()
    assert "ana@exa" not in released and "[EMAIL_1]" in released
