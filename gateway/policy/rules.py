"""How rules resolve: the action for a span type, and which of two actions is stronger."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.policy.config import Action
from gateway.policy.detection import CREDENTIAL_TYPES

STRENGTH: dict[Action, int] = {"allow": 0, "monitor": 1, "redact": 2, "block": 3}


def action_for(rules: Mapping[str, Action], span_type: str) -> Action:
    """The action of the most specific key: the type itself, `credentials` for a secret,
    then `*`; allow when none applies."""
    if span_type in rules:
        return rules[span_type]
    if span_type in CREDENTIAL_TYPES and "credentials" in rules:
        return rules["credentials"]
    return rules.get("*", "allow")


def stronger(a: Action, b: Action) -> Action:
    """The stronger of two actions (block > redact > monitor > allow)."""
    return a if STRENGTH[a] >= STRENGTH[b] else b
