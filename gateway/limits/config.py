"""Configuration of request and token rate limits.

    rate_limits:
      per_user: {rpm: 60, tpm: 100000}     # each user, unless listed in `users`
      per_key: {rpm: 30}                   # each issued API key, unless listed in `keys`
      users:
        batch-bot: {rpm: 600, tpm: 2000000}
      keys:
        key_0a1b2c: {rpm: 5}
      groups:
        contractors:
          rpm: 200                         # all members together
          per_member: {rpm: 10, tpm: 20000}  # each member, unless listed in `users`
      models:
        gpt-4o:
          tpm: 800000                      # every caller together (the provider's quota)
          per_user: {tpm: 50000}           # each user on this model
      store:
        url: redis://redis.internal:6379/0  # unset: counters in-process (one replica only)
        failure_mode: open                 # Redis down: open = allow, closed = refuse (503)

A user's own rate is `users[user]` when listed, else the strictest `per_member` rate of their
groups (rpm and tpm separately), else `per_user`. A request must fit every limit that applies:
its key's, its user's, each listed group's, its model's, and its model's per-user one. Each
limit holds `rpm` requests and `tpm` tokens (prompt + completion) per minute, refilled
continuously; an unset one is unlimited.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from gateway.section import ConfigSection


class Rate(ConfigSection):
    """Requests and tokens per minute; unset = unlimited."""

    rpm: int | None = Field(None, gt=0, description="requests per minute")
    tpm: int | None = Field(None, gt=0, description="tokens (prompt + completion) per minute")


class GroupRate(Rate):
    """A directory group's rate: its own rpm/tpm are for all members together."""

    per_member: Rate | None = Field(None, description="each member's own rate")


class ModelRate(Rate):
    """A model alias's rate: its own rpm/tpm are for all callers together."""

    per_user: Rate | None = Field(None, description="each user's own rate on this model")


class RateStoreConfig(ConfigSection):
    """Where the counters live and what happens when that store cannot be reached."""

    url: str | None = Field(
        None, description="redis://, rediss:// or unix:// URL; unset = in-process counters"
    )
    failure_mode: Literal["open", "closed"] = Field(
        "open", description="store unreachable: open = allow (logged, counted), closed = 503"
    )
    timeout_s: float = Field(0.5, gt=0, description="connect and command timeout")
    retry_interval_s: float = Field(
        1.0, ge=0, description="after a failure, the store is not tried again for this long"
    )
    warn_interval_s: float = Field(60.0, ge=0, description="at most one warning per interval")
    key_prefix: str = Field("raygate:rl:", description="prefix of every Redis key written")

    @field_validator("url", mode="before")
    @classmethod
    def _empty_is_unset(cls, url: object) -> object:
        # `${VAR:-}` in YAML gives "": no store configured, not a malformed one.
        return None if url == "" else url

    @field_validator("url")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("expected redis://, rediss:// or unix://")
        return url


class RateLimitsConfig(ConfigSection):
    """Who may send how much. See the module docstring for how the limits combine."""

    per_user: Rate | None = Field(None, description="each user not listed in `users`")
    per_key: Rate | None = Field(None, description="each API key not listed in `keys`")
    users: dict[str, Rate] = Field(default_factory=dict, description="by user_id")
    keys: dict[str, Rate] = Field(default_factory=dict, description="by API key_id")
    groups: dict[str, GroupRate] = Field(default_factory=dict, description="by group name")
    models: dict[str, ModelRate] = Field(
        default_factory=dict, description="by the model alias clients ask for"
    )
    store: RateStoreConfig = Field(default_factory=RateStoreConfig)

    def configured(self) -> bool:
        """Whether any rate is configured."""
        return bool(
            self.per_user or self.per_key or self.users or self.keys or self.groups or self.models
        )
