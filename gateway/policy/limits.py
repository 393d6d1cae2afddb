"""A profile's request limits: which models its members may use, and a max_tokens ceiling.

Both apply on top of the access grant (`access.groups.<g>.models`): a profile can narrow the
models, never widen them. The ceiling is the lower of the profile's `max_tokens` and that of
the first `model_rules` pattern matching the model; a request over it is clamped to it or
refused (`max_tokens_action`), and a request that names no limit gets the ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from gateway.audit.record import PolicyDecision
from gateway.policy.config import PolicyProfile


@dataclass
class LimitCheck:
    """What a profile's limits make of one request."""

    max_tokens: int | None  # the value to send upstream (None: leave the request's as it is)
    decisions: list[PolicyDecision] = field(default_factory=list)
    refused: Literal["model", "max_tokens"] | None = None  # what to refuse, when enforced
    ceiling: int | None = None


def admit(
    profile: PolicyProfile,
    model: str,
    max_tokens: int | None,
    *,
    generates: bool = True,
    dry_run: bool = False,
) -> LimitCheck:
    """The profile's model and max_tokens rules for a request for `model` asking for
    `max_tokens` (None: not set); the ceiling only where the request `generates` tokens (not
    embeddings). In a dry run the decisions are recorded, nothing changes."""
    result = LimitCheck(max_tokens=None)
    if not profile.allows_model(model):
        result.decisions.append(
            PolicyDecision(
                rule="models",
                detector="limits",
                action="block",
                detail=f"{model!r} is not in the profile's models {profile.models}",
            )
        )
        result.refused = None if dry_run else "model"
        return result
    ceiling = profile.token_ceiling(model) if generates else None
    result.ceiling = ceiling
    if ceiling is None or (max_tokens is not None and max_tokens <= ceiling):
        return result
    asked = "no max_tokens" if max_tokens is None else f"max_tokens {max_tokens}"
    reject = max_tokens is not None and profile.max_tokens_action == "reject"
    result.decisions.append(
        PolicyDecision(
            rule="max_tokens",
            detector="limits",
            action="block" if reject else "clamp",
            score=float(max_tokens) if max_tokens is not None else None,
            threshold=float(ceiling),
            detail=f"{asked} for {model!r}; the ceiling is {ceiling}",
        )
    )
    if dry_run:
        return result
    if reject:
        result.refused = "max_tokens"
    else:
        result.max_tokens = ceiling
    return result
