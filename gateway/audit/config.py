"""The `audit` section of the gateway's configuration."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from gateway.audit.record import ContentMode
from gateway.section import ConfigSection
from gateway.storage.keyring import Keyring


class AuditConfig(ConfigSection):
    """How the audit trail is written. It lives in the gateway's database (`storage.url`)."""

    enabled: bool = Field(True, description="write one chained record per request")
    prompt: ContentMode = Field(
        "hash", description="how prompts are kept: none, hash (sha256), redacted or full"
    )
    response: ContentMode = Field("hash", description="how responses are kept, as for prompts")
    max_queue: int = Field(
        10000, ge=1, description="records waiting for the database before requests wait too"
    )
    batch_size: int = Field(500, ge=1, description="records committed per transaction, at most")
    flush_interval_s: float = Field(
        0.2, ge=0, description="longest a record waits for its batch to fill before commit"
    )
    chain_key: str | None = Field(
        None,
        repr=False,
        description="HMAC keys of the chain, `id:secret[,old_id:old_secret]` (first current), "
        "e.g. ${RAYGATE_AUDIT_KEY}; unset: the chain is plain SHA-256",
    )
    chain_key_file: Path | None = Field(None, description="a file holding chain_key instead")

    @field_validator("chain_key", "chain_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `${VAR:-}` in YAML gives "": a key that is switched off, never an empty key.
        return None if value == "" else value

    @field_validator("chain_key")
    @classmethod
    def _well_formed(cls, value: str | None) -> str | None:
        if value is not None:
            Keyring.parse(value, name="chain_key")  # raises, naming the entry, never the secret
        return value

    def chain_keyring(self) -> Keyring | None:
        """The chain's keys (read from chain_key_file when that is how they are given)."""
        return Keyring.load(self.chain_key, self.chain_key_file, name="audit.chain_key")
