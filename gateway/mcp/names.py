"""How a virtual server names what its upstreams offer: tools and prompts as `server__name`,
resources as `mcp://server/<the upstream's URI, percent-encoded>`, so that every name says
which upstream it belongs to and two upstreams' names never collide.

Server names cannot contain `_` (see `gateway.mcp.config`), so the first `__` always ends the
server's part.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

SEPARATOR = "__"
RESOURCE_SCHEME = "mcp://"


def qualified(server: str, name: str) -> str:
    """The name a client sees for the upstream `server`'s tool or prompt `name`."""
    return f"{server}{SEPARATOR}{name}"


def split_qualified(name: str) -> tuple[str, str] | None:
    """(server, upstream name) of a qualified name; None when it is not one."""
    server, sep, rest = name.partition(SEPARATOR)
    if not sep or not server or not rest:
        return None
    return server, rest


def resource_uri(server: str, uri: str) -> str:
    """The URI a client sees for the upstream `server`'s resource `uri`."""
    return f"{RESOURCE_SCHEME}{server}/{quote(uri, safe='')}"


def split_resource_uri(uri: str) -> tuple[str, str] | None:
    """(server, upstream URI) of a gateway resource URI; None when it is not one."""
    if not uri.startswith(RESOURCE_SCHEME):
        return None
    server, sep, rest = uri[len(RESOURCE_SCHEME) :].partition("/")
    if not sep or not server or not rest:
        return None
    return server, unquote(rest)
