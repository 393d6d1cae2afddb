"""The MCP errors the gateway answers with: a JSON-RPC error whose `data.code` is the
gateway's own error code (the one the audit record keeps), so a client can tell a denial from
a policy block, a rate limit or an upstream failure without parsing the message."""

from __future__ import annotations

from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, REQUEST_TIMEOUT

# Implementation-defined JSON-RPC server errors (-32000 to -32099) that the SDK does not use.
FORBIDDEN = -32003
RATE_LIMITED = -32029
UPSTREAM_FAILED = -32010

# What the audit trail calls each outcome of a call (its decision, see `McpDecision`).
Outcome = str  # allowed | denied | redacted | blocked | rate_limited | upstream_error


class ToolRefused(MCPError):
    """A request the gateway answers with an MCP error; `error_code` and `outcome` are what
    its audit record keeps."""

    def __init__(self, code: int, message: str, *, error_code: str, outcome: Outcome) -> None:
        super().__init__(code, message, {"code": error_code})
        self.error_code = error_code
        self.outcome = outcome

    @classmethod
    def not_found(cls, kind: str, name: str, *, denied: bool) -> ToolRefused:
        """The same answer for a name that does not exist and one the caller may not use,
        so that a refusal does not reveal what exists."""
        return cls(
            INVALID_PARAMS,
            f"The {kind} {name!r} does not exist or you do not have access to it.",
            error_code=f"{kind}_not_allowed" if denied else f"{kind}_not_found",
            outcome="denied" if denied else "not_found",
        )

    @classmethod
    def blocked(cls, message: str, outcome: Outcome) -> ToolRefused:
        return cls(FORBIDDEN, message, error_code="policy_blocked", outcome=outcome)

    @classmethod
    def rate_limited(cls, message: str) -> ToolRefused:
        return cls(RATE_LIMITED, message, error_code="rate_limited", outcome="rate_limited")

    @classmethod
    def upstream(cls, message: str, error_code: str) -> ToolRefused:
        code = REQUEST_TIMEOUT if error_code == "upstream_timeout" else UPSTREAM_FAILED
        return cls(code, message, error_code=error_code, outcome="upstream_error")
