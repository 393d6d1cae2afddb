"""Keyrings: named secrets that live outside the database, the first one current.

The audit chain's HMAC key and the data key that seals stored text both come from the
environment or a file, never from the database they protect: whoever can write the database
should not also hold the key. A keyring holds several keys so that keys rotate without losing
what the old ones protect: new work uses the current (first) key, old records name the key
they were made with and are checked or opened with it.

Text form, as in `RAYGATE_AUDIT_KEY` / `RAYGATE_DATA_KEY` or a key file: entries separated by
commas, spaces or new lines, each `id:secret` or a bare `secret` (its id is then a fingerprint
of it). A secret has at least 32 characters; `new_secret()` makes one. Lines starting with `#`
in a file are comments.

Each use derives its own key from a secret (HKDF-SHA256 with the use's name), so one secret
given to two uses never keys both with the same bytes.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_CHARS = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_SEPARATORS = re.compile(r"[\s,]+")


class KeyringError(ValueError):
    """A keyring's text is malformed (the message says which entry and why, never a secret)."""


@dataclass(frozen=True)
class Keyring:
    """Named secrets; `current_id` names the one new work uses."""

    current_id: str
    secrets: Mapping[str, bytes]

    @classmethod
    def parse(cls, text: str, *, name: str = "keyring") -> Keyring:
        """The keyring written in `text` (see the module docstring); KeyringError if malformed."""
        found: dict[str, bytes] = {}
        lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
        for n, entry in enumerate(e for e in _SEPARATORS.split(" ".join(lines)) if e):
            key_id, secret = _entry(entry)
            if len(secret) < MIN_SECRET_CHARS:
                raise KeyringError(
                    f"{name}: key {n + 1} ({key_id}) is shorter than {MIN_SECRET_CHARS} "
                    "characters; make one with `raygate keys new-secret`"
                )
            if key_id in found:
                raise KeyringError(f"{name}: key id {key_id!r} appears twice")
            found[key_id] = secret.encode("utf-8")
        if not found:
            raise KeyringError(f"{name}: no key given")
        return cls(next(iter(found)), found)

    @classmethod
    def load(cls, value: str | None, file: Path | None, *, name: str) -> Keyring | None:
        """The keyring from `value`, else from the file `file`, else None (not configured)."""
        if value:
            return cls.parse(value, name=name)
        if file is not None:
            try:
                text = file.read_text(encoding="utf-8")
            except OSError as exc:
                raise KeyringError(f"{name}: cannot read {file}: {exc.strerror}") from None
            return cls.parse(text, name=f"{name} ({file})")
        return None

    @property
    def ids(self) -> tuple[str, ...]:
        """Every key id, the current one first."""
        return tuple(self.secrets)

    def current(self) -> tuple[str, bytes]:
        """The current key's id and secret."""
        return self.current_id, self.secrets[self.current_id]

    def get(self, key_id: str) -> bytes | None:
        """The secret named `key_id`, or None when this keyring does not hold it."""
        return self.secrets.get(key_id)

    def derive(self, purpose: str) -> Keyring:
        """The same key ids with 32-byte keys for `purpose` only (HKDF-SHA256)."""
        info = f"raygate/{purpose}".encode()
        derived = {
            key_id: HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)
            for key_id, secret in self.secrets.items()
        }
        return Keyring(self.current_id, derived)


def new_secret() -> str:
    """A fresh random secret (256 bits, URL-safe) for a keyring entry."""
    return secrets.token_urlsafe(32)


def _entry(entry: str) -> tuple[str, str]:
    key_id, sep, secret = entry.partition(":")
    if sep and _KEY_ID.match(key_id):
        return key_id, secret
    # A bare secret: named by a fingerprint, so the same secret always has the same id.
    return "k" + hashlib.sha256(entry.encode("utf-8")).hexdigest()[:8], entry
