"""LDAP string syntax: putting untrusted text into filters and DNs, and reading DNs back.

A username reaches the directory inside a search filter (RFC 4515) or a DN (RFC 4514); each
has its own escaping, and mixing them up is how LDAP injection happens.
"""

from __future__ import annotations

import re

_FILTER_SPECIALS = {"\\": r"\5c", "*": r"\2a", "(": r"\28", ")": r"\29", "\x00": r"\00"}
_DN_SPECIALS = set('\\,+"<>;=')


def escape_filter_value(text: str) -> str:
    """`text` as a literal assertion value in a search filter (RFC 4515 section 3).

    `*` becomes a literal star, not a wildcard; parentheses cannot close or open a clause.
    """
    return "".join(_FILTER_SPECIALS.get(char, char) for char in text)


def escape_dn_value(text: str) -> str:
    """`text` as a literal attribute value inside one RDN (RFC 4514 section 2.4).

    A comma cannot start a new RDN, `=`/`+` cannot add an attribute to this one.
    """
    escaped = []
    for position, char in enumerate(text):
        if char == "\x00":
            escaped.append(r"\00")
        elif (
            char in _DN_SPECIALS
            or (position == 0 and char in " #")
            or (position == len(text) - 1 and char == " ")
        ):
            escaped.append("\\" + char)
        else:
            escaped.append(char)
    return "".join(escaped)


def fill(template: str, **values: str) -> str:
    """`template` with each `{name}` replaced by its (already escaped) value, in one pass.

    Not `str.format` (a filter may hold braces of its own) and not chained `str.replace` (a
    value that contains `{user_dn}` must stay text, never become another placeholder).
    """
    pattern = "|".join(re.escape("{" + name + "}") for name in values)
    return re.sub(pattern, lambda match: values[match.group(0)[1:-1]], template)


def dn_key(dn: str) -> str:
    """A comparison key for a DN: attribute types and values case-folded, spacing dropped.

    Directories write the same DN in different spellings (`CN=Eng, OU=Groups` vs
    `cn=eng,ou=groups`); group traversal must treat them as one group.
    """
    return ",".join(f"{attr}={value}".casefold() for attr, value in _rdns(dn))


def rdn_value(dn: str, attribute: str) -> str | None:
    """The value of the DN's first RDN when its type is `attribute` and it needs no unescaping.

    `cn=ml-platform,ou=groups,...` names group "ml-platform" without another round trip.
    """
    rdns = _rdns(dn)
    if not rdns:
        return None
    attr, value = rdns[0]
    if attr.casefold() != attribute.casefold() or any(c in value for c in '\\+"'):
        return None
    return value


def _rdns(dn: str) -> list[tuple[str, str]]:
    """(type, raw value) per RDN, split at commas that are not escaped; spaces trimmed."""
    rdns: list[tuple[str, str]] = []
    current: list[str] = []
    escaped = False
    for char in dn + ",":
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            current.append(char)
            escaped = True
        elif char == ",":
            attr, _, value = "".join(current).partition("=")
            rdns.append((attr.strip(), value.strip()))
            current = []
        else:
            current.append(char)
    return rdns
