"""The `models` and `routing` sections: model aliases over provider targets, the conditions
that pick targets for a caller, and the resilience settings (retries, breakers, ejection,
active health checks) the router applies to them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from gateway.section import ConfigSection


class Target(ConfigSection):
    """A provider and the model name that provider knows, and what routing weighs it by."""

    provider: str
    model: str
    weight: float = Field(1.0, ge=0, description="share of first picks under `weighted`")
    price_per_mtok: TokenPrice | None = Field(
        None, description="USD per million tokens (`cost`); a number sets input and output alike"
    )
    when: RouteCondition | None = Field(None, description="only callers matching may use it")
    unless: RouteCondition | None = Field(None, description="callers matching never use it")

    @field_validator("price_per_mtok", mode="before")
    @classmethod
    def _one_price_for_both(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"input": value, "output": value}
        return value

    @property
    def label(self) -> str:
        """`provider/model`, as the route header shows it."""
        return f"{self.provider}/{self.model}"


class ModelAlias(ConfigSection):
    """A model name clients ask for, served by one or more targets.

    The strategy picks the first target; the others, in the strategy's order, are the
    fallback chain on a retryable failure (and on the failures named in `fallback_on`).
    """

    targets: list[Target] = Field(min_length=1, description="in order of preference")
    description: str = ""
    strategy: Literal["priority", "weighted", "least_latency", "least_busy", "cost"] = Field(
        "priority", description="how the first target is picked"
    )
    fallback_on: list[FallbackReason] = Field(
        default_factory=list, description="non-retryable failures that still move to the next"
    )
    retry: RetryPolicy | None = Field(None, description="fields set here override routing.retry")
    drop_params: bool | list[str] = Field(
        False,
        description="drop parameters a target cannot honour (all, or those named) instead of "
        "refusing the request; the route lists what was dropped",
    )
    when: RouteCondition | None = Field(None, description="only callers matching may use it")
    unless: RouteCondition | None = Field(None, description="callers matching may not use it")

    @field_validator("targets", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # "provider/model" is shorthand for {provider: ..., model: ...}.
        if isinstance(value, list):
            return [_split_target(item) if isinstance(item, str) else item for item in value]
        return value


# Failures that are not retryable but that another target may still answer (see ModelAlias).
FallbackReason = Literal[
    "invalid_request",
    "unsupported_parameter",
    "upstream_rejected",
    "payload_too_large",
    "content_filter",
]


class RouteCondition(ConfigSection):
    """Callers a target or alias is meant for: each list given must contain the caller's
    value (any one of the caller's groups); an empty condition matches everyone."""

    groups: list[str] = Field(default_factory=list, description="directory groups")
    users: list[str] = Field(default_factory=list, description="user ids")
    departments: list[str] = Field(default_factory=list)


class TokenPrice(ConfigSection):
    """A price in USD per million tokens."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)


class RetryPolicy(ConfigSection):
    """Retries of a target after a retryable failure, with full-jitter exponential backoff."""

    max_attempts: int = Field(1, ge=1, description="calls per target and request; 1 = no retry")
    base_delay: float = Field(0.1, ge=0, description="seconds; the n-th wait is at most base*2^n")
    max_delay: float = Field(2.0, ge=0, description="cap of one backoff wait, in seconds")
    max_retry_after: float = Field(
        5.0, ge=0, description="a longer upstream Retry-After is not waited for"
    )
    deadline: float = Field(
        30.0, gt=0, description="seconds after which no retry or backoff wait starts"
    )


class BreakerPolicy(ConfigSection):
    """When a target's circuit breaker opens, and how it comes back."""

    window: float = Field(30.0, gt=0, description="seconds of outcomes the failure rate covers")
    min_requests: int = Field(10, ge=1, description="outcomes in the window before it may trip")
    failure_rate: float = Field(0.5, gt=0, le=1, description="rate that trips it")
    cooldown: float = Field(5.0, gt=0, description="seconds open before the first probe")
    max_cooldown: float = Field(60.0, gt=0, description="cap of the growing cooldown")
    cooldown_multiplier: float = Field(2.0, ge=1, description="growth per failed probe")
    half_open_probes: int = Field(1, ge=1, description="requests admitted at once half-open")


class OutlierPolicy(ConfigSection):
    """Passive ejection: consecutive failures on live traffic take a target out for a while."""

    consecutive_failures: int = Field(5, ge=0, description="0 switches ejection off")
    ejection: float = Field(10.0, gt=0, description="seconds out before it is probed again")


class HealthCheck(ConfigSection):
    """An active check of one provider: GET `path` (relative to its base_url) every interval."""

    path: str = Field("/models", description="relative to base_url, or an absolute URL")
    interval: float = Field(10.0, gt=0, description="seconds between checks")
    timeout: float = Field(2.0, gt=0, description="seconds before a check counts as failed")
    unhealthy_after: int = Field(2, ge=1, description="consecutive failures to leave rotation")
    healthy_after: int = Field(1, ge=1, description="consecutive passes to be probed again")


class RoutingConfig(ConfigSection):
    """Resilience defaults shared by every alias: retries, breakers, ejection, health checks."""

    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    breaker: BreakerPolicy = Field(default_factory=BreakerPolicy)
    outlier: OutlierPolicy = Field(default_factory=OutlierPolicy)
    health_checks: dict[str, HealthCheck] = Field(
        default_factory=dict, description="provider name -> its active check"
    )
    latency_alpha: float = Field(
        0.3, gt=0, le=1, description="weight of the newest sample in the latency EWMA"
    )
    key_sync_interval_s: float = Field(
        2.0,
        ge=0,
        description="provider keys set at run time reach every replica within this (they are "
        "read on the request path at most once per interval)",
    )
    status_publish_interval_s: float = Field(
        5.0,
        gt=0,
        description="each router replica publishes its breakers and health to the gateway's "
        "database this often, and soon after a breaker changes (GET /admin/routing/replicas)",
    )

    def retry_for(self, alias: ModelAlias) -> RetryPolicy:
        """The alias's retry policy: this one, with the fields the alias sets replaced."""
        if alias.retry is None:
            return self.retry
        return self.retry.model_copy(update=alias.retry.model_dump(exclude_unset=True))


def _split_target(text: str) -> dict[str, str]:
    provider, sep, model = text.partition("/")
    if not sep or not provider or not model:
        raise ValueError(f"target {text!r} is not of the form provider/model")
    return {"provider": provider, "model": model}
