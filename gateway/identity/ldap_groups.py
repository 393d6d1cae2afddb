"""A user's groups, nested ones included.

Direct groups come from the user's `memberOf` values (servers that keep them: Active
Directory, OpenLDAP with the memberof overlay) and from a group search (`member={user_dn}`,
for servers that do not). With `nested_groups`, the groups that contain those groups follow,
one level per round trip: a group's own `memberOf` values and/or one OR-ed group search for
the whole level. Every group is visited once, so membership loops end, and `nested_group_depth`
bounds the walk through very deep trees.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from gateway.identity.ldap_config import LdapConfig
from gateway.identity.ldap_connections import DirectoryEntry, DirectoryReader
from gateway.identity.ldap_syntax import dn_key, escape_filter_value, fill, rdn_value

log = logging.getLogger(__name__)

# DNs per OR-ed group search: keeps filters well under server request-size limits.
_DNS_PER_SEARCH = 50

# key -> (DN, the entry when already read). Entries from a search carry name and memberOf;
# a DN seen only in a memberOf value has to be read when its name or parents are needed.
_Level = dict[str, tuple[str, DirectoryEntry | None]]


def resolve_groups(
    reader: DirectoryReader, user: DirectoryEntry, username: str, config: LdapConfig
) -> tuple[str, ...]:
    """The names (`group_name_attribute`) of every group `user` is in, sorted, each once."""
    member_of = config.attributes.member_of
    wanted = [config.group_name_attribute, *([member_of] if member_of else [])]
    level: _Level = {}
    _add_dns(level, user.values(member_of), seen={})
    if config.group_search_base is not None:
        user_filter = fill(
            config.group_filter,
            user_dn=escape_filter_value(user.dn),
            username=escape_filter_value(username),
        )
        _add_entries(level, reader.search(config.group_search_base, user_filter, wanted), {})

    # Without a group search, a group's parents are only in its own memberOf values.
    parents_from_entries = config.nested_groups and config.group_search_base is None
    names: dict[str, str] = {}
    for depth in range(1, config.nested_group_depth + 1):
        entries = []
        for key, (dn, entry) in level.items():
            cheap_name = rdn_value(dn, config.group_name_attribute)
            if entry is None and (parents_from_entries or cheap_name is None):
                entry = reader.read(dn, wanted)
            name = entry.first(config.group_name_attribute) if entry is not None else None
            names[key] = name or cheap_name or dn
            if entry is not None:
                entries.append(entry)
        if not config.nested_groups:
            break
        level = _parents(reader, level, entries, names, config, wanted)
        if not level:
            break
        if depth == config.nested_group_depth:
            log.info(
                "groups of %s nest deeper than %d levels; the deeper ones are not counted",
                user.dn,
                config.nested_group_depth,
            )
    return tuple(sorted(set(names.values()), key=str.casefold))


def _parents(
    reader: DirectoryReader,
    level: _Level,
    entries: list[DirectoryEntry],
    seen: dict[str, str],
    config: LdapConfig,
    wanted: list[str],
) -> _Level:
    """The groups that directly contain a group of `level`, minus those already `seen`."""
    parents: _Level = {}
    for entry in entries:
        _add_dns(parents, entry.values(config.attributes.member_of), seen)
    # A filter on {username} (posixGroup's memberUid) has no meaning for a group.
    if config.group_search_base is not None and "{username}" not in config.group_filter:
        dns = [dn for dn, _ in level.values()]
        for start in range(0, len(dns), _DNS_PER_SEARCH):
            clauses = "".join(
                fill(config.group_filter, user_dn=escape_filter_value(dn))
                for dn in dns[start : start + _DNS_PER_SEARCH]
            )
            found = reader.search(config.group_search_base, f"(|{clauses})", wanted)
            _add_entries(parents, found, seen)
    return parents


def _add_dns(level: _Level, dns: Iterable[str], seen: dict[str, str]) -> None:
    for dn in dns:
        key = dn_key(dn)
        if key not in seen:
            level.setdefault(key, (dn, None))


def _add_entries(level: _Level, entries: Iterable[DirectoryEntry], seen: dict[str, str]) -> None:
    for entry in entries:
        key = dn_key(entry.dn)
        if key not in seen:
            level[key] = (entry.dn, entry)
