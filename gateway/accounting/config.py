"""Configuration of prices and budgets.

    pricing:
      gpu_second_usd: 0.0008            # local models: cost of one GPU-second
      cpu_second_usd: 0.00001           # ... and of one CPU-second on CPU nodes
      prices:                           # beat the packaged prices.yaml
        openai/gpt-4o: {input: 2.5, output: 10, cached_input: 1.25}
        my-finetune: {input: 1, output: 4}
    budgets:
      default_user: {usd_per_day: 5, usd_per_month: 50}   # users not listed below
      users:
        alice: {usd_per_month: 200}
      groups:
        contractors:                    # the whole group together
          usd_per_month: 500
          per_member: {usd_per_day: 2}  # and each member on their own
      keys:
        key_0a1b2c: {usd_per_day: 1}    # one issued API key (its key_id)

A user's own limit is `users[user]` when listed, else the strictest `per_member` limit of
their groups, else `default_user`; every listed group they belong to and the API key they use
are checked as well. Each scope has a per-UTC-day and a per-UTC-month limit; an unset one is
unlimited and 0 refuses every request.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway.section import ConfigSection


class Price(ConfigSection):
    """USD per million tokens of one model."""

    input: float = Field(ge=0, description="prompt tokens not read from the provider's cache")
    output: float = Field(0.0, ge=0, description="completion tokens")
    cached_input: float | None = Field(
        None, ge=0, description="prompt tokens read from the provider's cache; unset = input"
    )


class PricingConfig(ConfigSection):
    """Prices that override the packaged table, and the price of local GPU time."""

    prices: dict[str, Price] = Field(
        default_factory=dict, description='"provider/model" or "model" -> price'
    )
    gpu_second_usd: float | None = Field(
        None, ge=0, description="cost of one GPU-second of a local model; unset = not priced"
    )
    cpu_second_usd: float | None = Field(
        None, ge=0, description="cost of one CPU-second of a local model on CPU nodes"
    )

    @field_validator("prices")
    @classmethod
    def _keys_name_a_model(cls, prices: dict[str, Price]) -> dict[str, Price]:
        for key in prices:
            if not key or key.startswith("/") or key.endswith("/"):
                raise ValueError(f"price key {key!r}: expected 'provider/model' or 'model'")
        return prices


class BudgetLimit(ConfigSection):
    """Spending limits of one scope, per UTC calendar day and month; unset = unlimited."""

    usd_per_day: float | None = Field(None, ge=0)
    usd_per_month: float | None = Field(None, ge=0)


class GroupBudget(BudgetLimit):
    """A directory group's budget: its own limits are for all members together."""

    per_member: BudgetLimit | None = Field(
        None, description="each member's own limit, unless `users` lists them"
    )


class BudgetsConfig(ConfigSection):
    """Who may spend how much. See the module docstring for how the limits combine."""

    users: dict[str, BudgetLimit] = Field(default_factory=dict, description="by user_id")
    groups: dict[str, GroupBudget] = Field(default_factory=dict, description="by group name")
    keys: dict[str, BudgetLimit] = Field(default_factory=dict, description="by API key_id")
    default_user: BudgetLimit | None = Field(
        None, description="for users neither listed nor in a group with per_member"
    )
    reservation_ttl_s: float = Field(
        900.0,
        gt=0,
        description="a reservation never settled (its replica died) stops counting after this",
    )

    def any_limits(self) -> bool:
        """Whether any budget is set (else the ledger, and its database work, is skipped)."""
        return bool(self.users or self.groups or self.keys or self.default_user)
