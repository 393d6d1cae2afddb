"""The MCP gateway: one MCP endpoint per virtual server (`/mcp/<name>`), aggregating the
organisation's upstream MCP servers under the gateway's identity, policy, limits and audit."""
