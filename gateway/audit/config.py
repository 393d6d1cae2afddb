"""The `audit` section of the gateway's configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.audit.record import ContentMode


class AuditConfig(BaseModel):
    """How the audit trail is written. It lives in the gateway's database (`storage.url`)."""

    model_config = ConfigDict(extra="forbid")

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
