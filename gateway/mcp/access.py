"""What a caller may use on a virtual server, from their groups (like `gateway.identity.access`
grants models): the union over every group listed in the virtual server's `access.groups`
that the caller is in; `access.default` for a caller in none."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from gateway.identity.principal import Principal
from gateway.mcp.config import ToolAccess, VirtualServerAccess
from gateway.mcp.names import qualified


@dataclass(frozen=True, slots=True)
class ToolGrant:
    """A caller's resolved access to one virtual server."""

    rules: tuple[ToolAccess, ...]
    groups: tuple[str, ...]  # the configured groups it came from; () = the default

    def allows_server(self, server: str) -> bool:
        """Whether any of the caller's rules allows the upstream `server` (its resources and
        prompts, and the tools the rule allows on it)."""
        return any(_matches(server, rule.servers) for rule in self.rules)

    def allows_tool(self, server: str, tool: str) -> bool:
        """Whether one rule allows both `server` and the namespaced tool."""
        name = qualified(server, tool)
        return any(
            _matches(server, rule.servers) and _matches(name, rule.tools) for rule in self.rules
        )

    def describe(self) -> str:
        """Where the grant came from, for a denial's audit record."""
        return f"groups {list(self.groups)}" if self.groups else "the default access"


def tool_grant(principal: Principal, access: VirtualServerAccess) -> ToolGrant:
    """The caller's grant on a virtual server whose access is `access`."""
    mine = [name for name in access.groups if name in principal.groups]
    if not mine:
        return ToolGrant((access.default,), ())
    return ToolGrant(tuple(access.groups[name] for name in mine), tuple(mine))


def _matches(value: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(value, pattern) for pattern in patterns)
