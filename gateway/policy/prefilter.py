"""Literal prefilters for regexes: the strings one of which every match must contain.

A regex scan of a long prompt costs ~0.1-0.2 ms in Python's engine whatever the pattern, and
most patterns never match a benign prompt. A substring test (`"ignore" in text`) is a
hundred times cheaper, so a pattern whose match must contain one of a few literals is only
scanned when one of them is in the text. The literals are read from the compiled pattern's
parse tree, never written by hand, and are conservative: where the tree says nothing for
certain (a case-insensitive group, an optional part, a character class) there is no
prefilter and the regex always runs.
"""

from __future__ import annotations

import functools
import re
from typing import Any

try:  # CPython's own regex parser (3.11+); without it, every regex simply always runs
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - another interpreter
    sre = sre_parse = None

Needs = frozenset[str] | None
"""Strings one of which every match contains; None: nothing is known."""

_REPEATS = (
    (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT))
    if sre is not None
    else ()
)


@functools.cache
def needs(pattern: re.Pattern[str]) -> Needs:
    """The literals one of which every match of `pattern` contains (None when unknown)."""
    if sre_parse is None or pattern.flags & re.IGNORECASE or not isinstance(pattern.pattern, str):
        return None
    return _sequence(sre_parse.parse(pattern.pattern, pattern.flags))


def may_match(pattern: re.Pattern[str], text: str) -> bool:
    """False only when `pattern` cannot match `text` (none of its needed literals is in it)."""
    required = needs(pattern)
    return required is None or any(literal in text for literal in required)


def _sequence(items: Any) -> Needs:
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for op, value in items:
        if op is sre.LITERAL:
            run.append(chr(value))
            continue
        if op is sre.AT:  # zero width: "a\bb" still holds the literal "ab"
            continue
        if run:
            candidates.append(frozenset({"".join(run)}))
            run = []
        found = _node(op, value)
        if found:
            candidates.append(found)
    if run:
        candidates.append(frozenset({"".join(run)}))
    if not candidates:
        return None
    # the most selective: the longest shortest literal, then the fewest literals
    return max(candidates, key=lambda c: (min(map(len, c)), -len(c)))


def _node(op: Any, value: Any) -> Needs:
    if op is sre.SUBPATTERN:
        _group, add_flags, _del_flags, inner = value
        return None if add_flags & re.IGNORECASE else _sequence(inner)
    if op is getattr(sre, "ATOMIC_GROUP", None):
        return _sequence(value)
    if op is sre.BRANCH:
        branches = [_sequence(branch) for branch in value[1]]
        if any(b is None for b in branches):
            return None
        return frozenset().union(*branches)  # type: ignore[arg-type]
    if op in _REPEATS:
        low, _high, inner = value
        return _sequence(inner) if low >= 1 else None
    return None
