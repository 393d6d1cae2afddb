"""Keyrings and sealed values: keys from outside the database, AES-GCM bound to its place,
rotation without losing old values."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.storage.keyring import MIN_SECRET_CHARS, Keyring, KeyringError, new_secret
from gateway.storage.sealing import Sealer, SealError, is_sealed, sealed_key_id

OLD = "old:" + "o" * 40
NEW = "new:" + "n" * 40


def test_a_keyring_reads_named_and_bare_secrets_and_the_first_is_current() -> None:
    bare = new_secret()
    ring = Keyring.parse(f"{NEW}, {OLD}\n{bare}")
    assert ring.current_id == "new"
    assert ring.ids[:2] == ("new", "old")
    assert ring.get("old") == b"o" * 40
    fingerprint = ring.ids[2]
    assert fingerprint.startswith("k") and Keyring.parse(bare).current_id == fingerprint


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "no key"),
        ("short:abc", f"shorter than {MIN_SECRET_CHARS}"),
        (f"{OLD},{OLD}", "appears twice"),
    ],
)
def test_a_malformed_keyring_says_why_without_the_secret(text: str, says: str) -> None:
    with pytest.raises(KeyringError, match=says) as caught:
        Keyring.parse(text, name="RAYGATE_DATA_KEY")
    assert "RAYGATE_DATA_KEY" in str(caught.value)
    assert "o" * 40 not in str(caught.value)


def test_a_keyring_file_takes_comments_and_one_key_a_line(tmp_path: Path) -> None:
    path = tmp_path / "data.key"
    path.write_text(f"# rotated 2026-01\n{NEW}\n{OLD}\n")
    ring = Keyring.load(None, path, name="data key")
    assert ring is not None and ring.ids == ("new", "old")
    assert Keyring.load(None, None, name="data key") is None
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.load(None, tmp_path / "missing", name="data key")


def test_derived_keys_differ_by_purpose() -> None:
    ring = Keyring.parse(OLD)
    assert ring.derive("a").get("old") != ring.derive("b").get("old")
    assert len(ring.derive("a").get("old") or b"") == 32


def test_a_sealed_value_opens_in_its_context_only() -> None:
    sealer = Sealer(Keyring.parse(OLD))
    sealed = sealer.seal("card 4111 1111 1111 1111", context="audit:r1:prompt")
    assert is_sealed(sealed) and sealed_key_id(sealed) == "old"
    assert "4111" not in sealed
    assert sealer.open(sealed, context="audit:r1:prompt") == "card 4111 1111 1111 1111"
    with pytest.raises(SealError, match="moved"):
        sealer.open(sealed, context="audit:r2:prompt")
    with pytest.raises(SealError, match="moved"):
        sealer.open(sealed, context="audit:r1:response")


def test_the_same_text_seals_differently_each_time() -> None:
    sealer = Sealer(Keyring.parse(OLD))
    assert sealer.seal("hi", context="c") != sealer.seal("hi", context="c")


def test_an_altered_sealed_value_does_not_open() -> None:
    sealer = Sealer(Keyring.parse(OLD))
    sealed = sealer.seal("hello there", context="c")
    flipped = sealed[:-3] + ("A" if sealed[-3] != "A" else "B") + sealed[-2:]
    for broken in (flipped, sealed[:20], "rgs1:old:!!!", "rgs1:nokeyid"):
        with pytest.raises(SealError):
            sealer.open(broken, context="c")


def test_rotation_opens_old_values_and_reseals_them_under_the_new_key() -> None:
    old_value = Sealer(Keyring.parse(OLD)).seal("kept for years", context="c")
    rotated = Sealer(Keyring.parse(f"{NEW},{OLD}"))
    assert rotated.open(old_value, context="c") == "kept for years"
    resealed = rotated.reseal(old_value, context="c")
    assert sealed_key_id(resealed) == "new"
    assert rotated.reseal(resealed, context="c") == resealed  # already current: unchanged
    retired = Sealer(Keyring.parse(NEW))
    assert retired.open(resealed, context="c") == "kept for years"
    with pytest.raises(SealError, match="does not hold"):
        retired.open(old_value, context="c")
