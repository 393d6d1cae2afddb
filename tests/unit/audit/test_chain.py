"""The record model, its canonical form and hash, and how content is kept."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from gateway.audit import AuditRecord, ContentPolicy
from gateway.audit.chain import GENESIS, canonical, link_hash, seal
from gateway.audit.schema import from_row, to_row
from tests.unit.audit.factory import make_record


def test_canonical_form_is_sorted_compact_utf8_without_hash() -> None:
    record = seal(make_record(1), 1, GENESIS)
    text = canonical(record).decode("utf-8")
    body = json.loads(text)
    assert "hash" not in body
    assert list(body) == sorted(body)
    assert text == json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert "ünïcode" in text  # UTF-8, not \u escapes


def test_hash_is_sha256_of_prev_hash_then_canonical_record() -> None:
    record = seal(make_record(2), 7, "ab" * 32)
    expected = hashlib.sha256(("ab" * 32).encode() + canonical(record)).hexdigest()
    assert record.hash == expected == link_hash("ab" * 32, record)
    assert (record.seq, record.prev_hash) == (7, "ab" * 32)


def test_seq_and_prev_hash_are_part_of_the_hash() -> None:
    record = make_record(3)
    assert seal(record, 1, GENESIS).hash != seal(record, 2, GENESIS).hash
    assert seal(record, 1, GENESIS).hash != seal(record, 1, "f" * 64).hash


def test_record_round_trips_through_its_row_exactly() -> None:
    record = seal(make_record(4), 4, GENESIS)
    again = from_row(to_row(record))
    assert again == record
    assert canonical(again) == canonical(record)


def test_record_without_principal_or_optional_stages_round_trips() -> None:
    record = seal(AuditRecord(status=401, error_code="invalid_api_key"), 1, GENESIS)
    assert from_row(to_row(record)) == record


def test_timestamps_are_stored_as_fixed_width_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    record = make_record(0, ts=datetime(2025, 1, 2, 5, 0, 0, 7, tzinfo=plus_two))
    assert record.model_dump(mode="json")["ts"] == "2025-01-02T03:00:00.000007Z"
    naive = make_record(0, ts=datetime(2025, 1, 2, 3, 0))
    assert naive.model_dump(mode="json")["ts"] == "2025-01-02T03:00:00.000000Z"


def test_a_number_without_a_json_form_is_refused() -> None:
    with pytest.raises(ValidationError):
        make_record(0, cost_usd=float("nan"))


@pytest.mark.parametrize(
    ("mode", "stored"),
    [
        ("none", None),
        ("hash", hashlib.sha256(b"Call me at +1 555").hexdigest()),
        ("redacted", "Call me at [PHONE]"),
        ("full", "Call me at +1 555"),
    ],
)
def test_content_is_kept_per_mode(mode: str, stored: str | None) -> None:
    policy = ContentPolicy(
        prompt=mode,  # type: ignore[arg-type]
        response="none",
        redactor=lambda text: text.replace("+1 555", "[PHONE]"),
    )
    kept = policy.apply(AuditRecord(prompt="Call me at +1 555", response="Sure"))
    assert (kept.prompt_mode, kept.prompt) == (mode, stored)
    assert (kept.response_mode, kept.response) == ("none", None)


def test_default_redactor_is_the_identity() -> None:
    kept = ContentPolicy(prompt="redacted").apply(AuditRecord(prompt="as is"))
    assert (kept.prompt_mode, kept.prompt) == ("redacted", "as is")


def test_content_already_treated_is_not_treated_twice() -> None:
    policy = ContentPolicy(prompt="hash", response="hash")
    once = policy.apply(AuditRecord(prompt="x", response="y"))
    assert policy.apply(once) == once


def test_nul_characters_are_replaced_so_both_backends_store_the_same_text() -> None:
    kept = ContentPolicy(prompt="full").apply(AuditRecord(prompt="a\x00b"))
    assert kept.prompt == "a\ufffdb"
