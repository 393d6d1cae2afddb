"""`Router.status()`: the routing state an operator reads at `/admin/routing`, and each router
replica's as published on the status board at `/admin/routing/replicas` (data only)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from gateway.routing.breaker import BreakerState

Health = Literal["healthy", "unhealthy", "ejected", "unchecked"]


class TargetStatus(BaseModel):
    """One target as the router sees it now."""

    target: str
    provider: str
    breaker: BreakerState
    open_reason: str | None
    failure_rate: float
    window_requests: int
    trips: int
    next_probe_in_s: float | None
    in_flight: int
    latency_ewma_ms: float | None
    consecutive_failures: int
    health: Health
    """`unhealthy`: its provider fails active checks; `ejected`: out after consecutive
    failures; `healthy`: checks pass; `unchecked`: no active check and not ejected."""


class AliasStatus(BaseModel):
    """An alias's strategy and its targets in configured order."""

    strategy: str
    targets: list[str]


class TransitionStatus(BaseModel):
    """A recent breaker transition, `ago_s` seconds ago."""

    target: str
    before: BreakerState
    after: BreakerState
    reason: str
    ago_s: float


class RoutingStatus(BaseModel):
    """Every alias and target of one router (one Serve replica), and recent transitions."""

    aliases: dict[str, AliasStatus]
    targets: list[TargetStatus]
    transitions: list[TransitionStatus]


class ReplicaStatus(BaseModel):
    """One router replica's status as it last published it, `age_s` seconds ago."""

    replica: str
    age_s: float
    status: RoutingStatus


class ReplicaStatuses(BaseModel):
    """Every router replica that published within the last few intervals (`interval_s` is how
    often each publishes)."""

    replicas: list[ReplicaStatus]
    interval_s: float
