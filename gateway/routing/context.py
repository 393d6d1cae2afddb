"""Who is asking, as far as routing conditions care, and whether a condition admits them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.routing.config import RouteCondition

if TYPE_CHECKING:
    from gateway.identity.principal import Principal


@dataclass(frozen=True, slots=True)
class RouteContext:
    """The caller's identity facts that `when` / `unless` conditions look at.

    Plain data, so it crosses a Ray handle as it is.
    """

    user_id: str | None = None
    groups: tuple[str, ...] = ()
    department: str | None = None
    key_id: str | None = None

    @classmethod
    def of(cls, principal: Principal) -> RouteContext:
        """The context of an authenticated caller."""
        return cls(
            user_id=principal.user_id,
            groups=tuple(principal.groups),
            department=principal.department,
            key_id=principal.key_id,
        )


def matches(condition: RouteCondition, context: RouteContext | None) -> bool:
    """Whether the caller meets every dimension the condition names.

    Within one dimension any listed value will do (any of the caller's groups). Without a
    context (an unauthenticated, in-process call) only the empty condition matches.
    """
    if condition.users and (context is None or context.user_id not in condition.users):
        return False
    if condition.groups and (context is None or not set(context.groups) & set(condition.groups)):
        return False
    return not condition.departments or (
        context is not None and context.department in condition.departments
    )


def admits(
    when: RouteCondition | None, unless: RouteCondition | None, context: RouteContext | None
) -> bool:
    """Whether a target or alias with these conditions may serve this caller."""
    if when is not None and not matches(when, context):
        return False
    # An empty `unless` would exclude everyone; read it as "no exclusion", as if absent.
    if unless is None or not (unless.groups or unless.users or unless.departments):
        return True
    return not matches(unless, context)
