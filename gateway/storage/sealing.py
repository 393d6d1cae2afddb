"""Sealing: stored text encrypted at rest with AES-256-GCM, under a key from outside the
database, so that a copy of the database (a backup, a replica, a stolen disk) does not hold
prompts and answers in clear.

A sealed value is one self-describing string, `rgs1:<key id>:<base64url(nonce || ciphertext)>`,
stored where the text would be. The key id inside it is what lets keys rotate: new values are
sealed under the current key of the data keyring (`storage.data_key`, e.g.
`RAYGATE_DATA_KEY`), old ones open with the key they name until they are resealed
(`Sealer.reseal`, which `raygate audit rekey` runs over the audit trail).

Every value is sealed for a `context` (e.g. `audit:<record id>:prompt`) that is authenticated
with it: a sealed value copied to another row or column does not open there, and a changed
byte does not open anywhere. Opening fails loudly (`SealError`), never with wrong text.

Usage, for any store of text (the audit trail, the cache's entry log):

    sealer = Sealer.from_config(config.storage)        # None when no data key is configured
    stored = sealer.seal(text, context=f"cache:{entry_id}:answer") if sealer else text
    text = sealer.open(stored, context=f"cache:{entry_id}:answer") if is_sealed(stored) else stored
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.storage.keyring import Keyring

PREFIX = "rgs1:"
_NONCE_BYTES = 12
_PURPOSE = "data-sealing/v1"


class SealError(ValueError):
    """A sealed value does not open: unknown key, wrong context, or altered bytes."""


def is_sealed(value: object) -> bool:
    """Whether a stored value is a sealed value (cheap: looks at its prefix)."""
    return isinstance(value, str) and value.startswith(PREFIX)


def sealed_key_id(value: str) -> str:
    """The id of the key a sealed value was sealed under."""
    if not is_sealed(value):
        raise SealError("not a sealed value")
    key_id, sep, _ = value[len(PREFIX) :].partition(":")
    if not sep or not key_id:
        raise SealError("a sealed value without a key id")
    return key_id


class Sealer:
    """Seals and opens text with the keys of one data keyring."""

    def __init__(self, keyring: Keyring) -> None:
        self._keys = keyring.derive(_PURPOSE)
        self._ciphers = {key_id: AESGCM(key) for key_id, key in self._keys.secrets.items()}

    @classmethod
    def from_keyring(cls, keyring: Keyring | None) -> Sealer | None:
        """A sealer for `keyring`, or None when there is no keyring (text stays in clear)."""
        return cls(keyring) if keyring is not None else None

    @property
    def current_key_id(self) -> str:
        """The key new values are sealed under."""
        return self._keys.current_id

    def holds(self, key_id: str) -> bool:
        """Whether this sealer can open values sealed under `key_id`."""
        return key_id in self._ciphers

    def seal(self, text: str, *, context: str) -> str:
        """`text` sealed under the current key for `context`."""
        key_id = self._keys.current_id
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[key_id].encrypt(nonce, text.encode("utf-8"), _aad(context))
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{PREFIX}{key_id}:{body}"

    def open(self, value: str, *, context: str) -> str:
        """The text sealed in `value` for `context`; SealError if it does not open."""
        key_id = sealed_key_id(value)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SealError(
                f"sealed under key {key_id!r}, which the data keyring does not hold "
                f"(it holds {', '.join(self._ciphers)})"
            )
        encoded = value[len(PREFIX) + len(key_id) + 1 :]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError):
            raise SealError("a sealed value that is not base64") from None
        if len(raw) <= _NONCE_BYTES:
            raise SealError("a sealed value too short to hold anything")
        try:
            plain = cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(context))
        except InvalidTag:
            raise SealError(
                "a sealed value does not open: altered, or moved from another place"
            ) from None
        return plain.decode("utf-8")

    def reseal(self, value: str, *, context: str) -> str:
        """`value` under the current key: opened and sealed again unless it already is."""
        if sealed_key_id(value) == self._keys.current_id:
            return value
        return self.seal(self.open(value, context=context), context=context)


def _aad(context: str) -> bytes:
    return b"raygate-sealed-v1\x00" + context.encode("utf-8")
