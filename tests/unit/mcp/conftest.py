"""The upstream MCP server most of these tests put behind the gateway."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers.mcp_upstream import HttpUpstream, serve_http


@pytest.fixture(scope="module")
def alpha() -> Iterator[HttpUpstream]:
    """A real MCP server (the official SDK's) on loopback over Streamable HTTP, one per test
    module."""
    with serve_http("alpha") as upstream:
        yield upstream
