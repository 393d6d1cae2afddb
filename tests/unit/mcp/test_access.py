"""Names and grants on a virtual server."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.identity.principal import Principal
from gateway.mcp.access import tool_grant
from gateway.mcp.config import McpConfig, VirtualServerAccess
from gateway.mcp.names import qualified, resource_uri, split_qualified, split_resource_uri

ACCESS = VirtualServerAccess.model_validate(
    {
        "default": {"servers": ["wiki"], "tools": ["wiki__search"]},
        "groups": {
            "support": {"servers": ["tickets"], "tools": ["tickets__get"]},
            "writers": {"servers": ["wiki"], "tools": ["wiki__*"]},
        },
    }
)


def test_names_keep_their_server_and_round_trip() -> None:
    assert split_qualified(qualified("wiki", "get__page")) == ("wiki", "get__page")
    assert split_qualified("no-separator") is None
    uri = resource_uri("wiki", "file:///docs/a b.md?x=1")
    assert uri == "mcp://wiki/file%3A%2F%2F%2Fdocs%2Fa%20b.md%3Fx%3D1"
    assert split_resource_uri(uri) == ("wiki", "file:///docs/a b.md?x=1")
    assert split_resource_uri("file:///etc/passwd") is None


def test_a_grant_is_the_union_of_the_callers_listed_groups() -> None:
    both = tool_grant(Principal("kim", "key", groups=("support", "writers")), ACCESS)
    assert both.allows_tool("tickets", "get") and both.allows_tool("wiki", "edit")
    # One rule must allow both the server and the tool: support's tools do not extend to wiki.
    assert not both.allows_tool("tickets", "close")
    nobody = tool_grant(Principal("sam", "key", groups=("sales",)), ACCESS)
    assert nobody.groups == () and nobody.allows_tool("wiki", "search")
    assert not nobody.allows_tool("wiki", "edit") and not nobody.allows_server("tickets")


def test_the_config_refuses_what_cannot_work() -> None:
    with pytest.raises(ValidationError, match="unknown servers"):
        McpConfig.model_validate({"virtual_servers": {"t": {"servers": ["nope"]}}})
    with pytest.raises(ValidationError, match="transport stdio needs command"):
        McpConfig.model_validate({"servers": {"s": {"transport": "stdio"}}})
    with pytest.raises(ValidationError, match="forward_identity is for transport http"):
        forward = {"enabled": True}
        stdio = {"transport": "stdio", "command": "x", "forward_identity": forward}
        McpConfig.model_validate({"servers": {"s": stdio}})
    with pytest.raises(ValidationError):  # `_` would make `server__tool` ambiguous
        McpConfig.model_validate({"servers": {"my_server": {"transport": "http", "url": "u"}}})
