"""The audit record: what the gateway did with one request, as one typed row of the chain.

The request path fills what it knows (a stage that did not run leaves its fields empty); the
writer sets the content modes, and the store sets `seq`, `prev_hash` and `hash` when it appends
the record to the chain. Everything here round-trips exactly through the database, which is
what lets `verify` recompute each hash from the stored columns.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from gateway.identity.principal import Principal

ContentMode = Literal["none", "hash", "redacted", "full"]
CachePhase = Literal["miss", "exact", "normalized", "semantic", "bypass"]

_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_ts(moment: datetime) -> str:
    """A UTC instant as stored: fixed width, so that text order is time order on every backend."""
    return as_utc(moment).strftime(_TS_FORMAT)


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def utc_now() -> datetime:
    """The current instant in UTC (the default clock)."""
    return datetime.now(UTC)


Timestamp = Annotated[
    datetime, AfterValidator(as_utc), PlainSerializer(format_ts, return_type=str, when_used="json")
]


class _Strict(BaseModel):
    # NaN and infinity have no JSON form, so a record holding one could not be hashed canonically.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class AuditPrincipal(_Strict):
    """Who made the request, as the directory knew them at that moment."""

    user_id: str
    auth_method: str
    email: str | None = None
    department: str | None = None
    groups: list[str] = Field(default_factory=list)
    roles: list[str] = Field(default_factory=list)
    key_id: str | None = Field(None, description="the issued API key used, if one was")

    @classmethod
    def of(cls, principal: Principal) -> AuditPrincipal:
        """The audited part of an authenticated `Principal`."""
        return cls(
            user_id=principal.user_id,
            auth_method=principal.auth_method,
            email=principal.email,
            department=principal.department,
            groups=list(principal.groups),
            roles=list(principal.roles),
            key_id=principal.key_id,
        )


class PolicyDecision(_Strict):
    """One policy rule that fired, and what it did."""

    rule: str
    detector: str | None = None
    action: str = Field(description="e.g. allow, redact, block, flag")
    span_types: list[str] = Field(default_factory=list, description="e.g. EMAIL, IBAN")
    topic: str | None = None
    score: float | None = Field(None, description="a scored rule's score (topic, jailbreak)")
    threshold: float | None = Field(None, description="the score at which the rule fires")
    detail: str | None = Field(None, description="why, e.g. the nearest known attack")


class AuditRecord(_Strict):
    """One gateway request. Fields are optional where a stage may not have run.

    An admin action (a key issued, the trail exported, ...) is a record too: `principal` is
    the actor (the admin, with the admin roles they held), `admin_action` what they did (the
    permission-style name, e.g. `keys.revoke`) and `admin_target` what it was done to (e.g.
    `key:3f2a...`, `user:alice`). All three are hashed into the chain like every field.
    """

    id: str = Field(default_factory=lambda: str(uuid.uuid4()), description="record id")
    seq: int | None = Field(None, description="position in the chain; set on append")
    ts: Timestamp = Field(default_factory=utc_now, description="when the request arrived")
    request_id: str | None = None
    principal: AuditPrincipal | None = Field(None, description="None before authentication")
    client_address: str | None = None
    route: str | None = Field(None, description="the API path, e.g. /v1/chat/completions")
    model_requested: str | None = None
    route_taken: str | None = Field(
        None, description='e.g. "simulator/sim-secondary; tried=simulator/sim-primary:503"'
    )
    cache_phase: CachePhase | None = None
    similarity: float | None = None
    decisions: list[PolicyDecision] = Field(default_factory=list)
    topics: list[str] = Field(default_factory=list)
    tokens_in: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    cost_avoided_usd: float | None = Field(
        None, description="a cache hit: what the answer would have cost at list price"
    )
    latency_ms: float | None = None
    status: int | None = Field(None, description="the HTTP status answered")
    error_code: str | None = None
    prompt_mode: ContentMode | None = Field(
        None, description="how `prompt` is stored; None: raw text the writer has yet to treat"
    )
    prompt: str | None = Field(
        None,
        description="the prompt as the gateway forwarded it (after the input policy's "
        "redaction); the writer stores it per `prompt_mode` and never sees anything else",
    )
    response_mode: ContentMode | None = None
    response: str | None = Field(None, description="the answer as the client received it")
    admin_action: str | None = Field(None, description="an admin action, e.g. keys.revoke")
    admin_target: str | None = Field(None, description="what it acted on, e.g. key:<id>")
    chain_key: str | None = Field(
        None, description="the id of the HMAC key that sealed this record; None: plain SHA-256"
    )
    prev_hash: str | None = Field(None, description="the hash of the record before; on append")
    hash: str | None = Field(
        None, description="HMAC (or sha256) of prev_hash || canonical record; on append"
    )

    @property
    def actions(self) -> list[str]:
        """The distinct policy actions taken, in first-seen order."""
        return list(dict.fromkeys(d.action for d in self.decisions))
