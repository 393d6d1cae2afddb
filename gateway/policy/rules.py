"""How rules resolve: the action (or confidence floor) for a span type, and which of two
actions is stronger."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from gateway.policy.config import Action
from gateway.policy.detection import GROUPS, OPT_IN_TYPES

STRENGTH: dict[Action, int] = {"allow": 0, "monitor": 1, "redact": 2, "block": 3}

V = TypeVar("V")


def rule_for(rules: Mapping[str, V], span_type: str) -> V | None:
    """The value of the most specific key for `span_type`: the type itself, then its group
    (`credentials`, `phi`, `entities`), then `*` (which does not cover the NER types, each of
    which costs a model run, nor URL: a profile names them, or `entities`); None when no key
    applies."""
    if span_type in rules:
        return rules[span_type]
    for group, members in GROUPS.items():
        if span_type in members and group in rules:
            return rules[group]
    if span_type in OPT_IN_TYPES:
        return None
    return rules.get("*")


def action_for(rules: Mapping[str, Action], span_type: str) -> Action:
    """The action of the most specific key (see `rule_for`); allow when none applies."""
    action = rule_for(rules, span_type)
    return "allow" if action is None else action


def stronger(a: Action, b: Action) -> Action:
    """The stronger of two actions (block > redact > monitor > allow)."""
    return a if STRENGTH[a] >= STRENGTH[b] else b
