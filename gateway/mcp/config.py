"""Configuration of the MCP gateway: the upstream MCP servers, and the virtual servers that
aggregate them for callers.

    mcp:
      servers:
        tickets:
          transport: http
          url: https://tickets.internal/mcp
          auth: {bearer_token: "${TICKETS_MCP_TOKEN}"}     # stays in the gateway
          forward_identity: {enabled: true}                 # x-user-id, x-user-email, x-user-groups
        wiki:
          transport: http
          url: https://wiki.internal/mcp
          auth:
            oauth:                                          # client credentials, cached
              token_url: https://sso.internal/oauth2/token
              client_id: raygate
              client_secret: "${WIKI_CLIENT_SECRET}"
              scope: wiki.read
        files:
          transport: stdio                                  # a child of each replica
          command: python
          args: [-m, files_mcp]
          env: {FILES_ROOT: /srv/files}
      virtual_servers:
        tools:                                              # served at /mcp/tools
          servers: [tickets, wiki, files]
          access:
            default: {servers: [wiki], tools: ["wiki__search"]}
            groups:
              engineering: {servers: ["*"], tools: ["*"]}
              support: {servers: [tickets], tools: ["tickets__list_*", "tickets__get"]}

A caller may use a tool `<server>__<tool>` when one of their groups listed under `access.groups`
(or `access.default`, when none is listed) allows both the server and the namespaced tool
(shell patterns), the way `access` grants models by group. Resources and prompts follow the
server allow-list.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from gateway.section import ConfigSection

# Server names become the prefix of tool names (`server__tool`) and a URI's host part.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
ServerName = Annotated[str, Field(pattern=_NAME.pattern, max_length=64)]


class OAuthClientCredentials(ConfigSection):
    """An OAuth 2.0 client-credentials grant; the token is cached until shortly before it
    expires."""

    token_url: str = Field(description="the authorization server's token endpoint")
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1, description="a ${ENV} reference")
    scope: str | None = Field(None, description="space-separated scopes asked for")
    refresh_margin_s: float = Field(
        30.0, ge=0, description="a token this close to expiry is replaced before use"
    )


class UpstreamAuth(ConfigSection):
    """The gateway's own credential for an upstream: never the caller's, never shown to them."""

    bearer_token: str | None = Field(None, description="a static token, as ${ENV}")
    oauth: OAuthClientCredentials | None = Field(None, description="client credentials")

    @model_validator(mode="after")
    def _one_kind(self) -> UpstreamAuth:
        if self.bearer_token and self.oauth is not None:
            raise ValueError("set bearer_token or oauth, not both")
        return self


class ForwardIdentity(ConfigSection):
    """Whether, and in which headers, the caller's identity is passed to an HTTP upstream."""

    enabled: bool = Field(False, description="off: the upstream sees only the gateway")
    user_header: str = Field("x-user-id", description="the caller's user id")
    email_header: str = Field("x-user-email", description="the caller's e-mail, when known")
    groups_header: str = Field("x-user-groups", description="the caller's groups, comma-separated")


class UpstreamServer(ConfigSection):
    """One upstream MCP server: over Streamable HTTP, or a stdio child process."""

    transport: Literal["http", "stdio"]
    url: str | None = Field(None, description="http: the MCP endpoint")
    headers: dict[str, str] = Field(
        default_factory=dict, description="http: extra headers sent to the upstream"
    )
    command: str | None = Field(None, description="stdio: the program to start")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments")
    env: dict[str, str] = Field(
        default_factory=dict, description="stdio: environment added to a minimal default one"
    )
    cwd: str | None = Field(None, description="stdio: working directory")
    auth: UpstreamAuth = Field(default_factory=UpstreamAuth)
    forward_identity: ForwardIdentity = Field(default_factory=ForwardIdentity)
    timeout_s: float = Field(60.0, gt=0, description="a call not answered by then fails")
    connect_timeout_s: float = Field(
        20.0, gt=0, description="starting the process / opening the session"
    )
    max_sessions: int = Field(
        64, gt=0, description="with forward_identity: upstream sessions kept, one per caller"
    )

    @model_validator(mode="after")
    def _transport_fields(self) -> UpstreamServer:
        if self.transport == "http":
            if not self.url:
                raise ValueError("transport http needs url")
            if self.command is not None:
                raise ValueError("command is for transport stdio")
        else:
            if not self.command:
                raise ValueError("transport stdio needs command")
            if self.url is not None:
                raise ValueError("url is for transport http")
            if self.auth.bearer_token or self.auth.oauth is not None:
                raise ValueError("auth is for transport http (give a stdio server its env)")
            if self.forward_identity.enabled:
                raise ValueError("forward_identity is for transport http")
        return self


class ToolAccess(ConfigSection):
    """What members of one directory group may use on a virtual server."""

    servers: list[str] = Field(
        default_factory=lambda: ["*"], description="upstream server names, shell patterns"
    )
    tools: list[str] = Field(
        default_factory=lambda: ["*"], description="namespaced tools (server__tool), patterns"
    )


class VirtualServerAccess(ConfigSection):
    """Group -> servers / tools, resolved like `access`: the union over every listed group
    the caller is in; `default` for a caller in none."""

    default: ToolAccess = Field(default_factory=ToolAccess)
    groups: dict[str, ToolAccess] = Field(default_factory=dict)


class VirtualServer(ConfigSection):
    """One MCP endpoint (`/mcp/<name>`) over some upstream servers."""

    servers: list[ServerName] = Field(min_length=1, description="the upstreams it aggregates")
    access: VirtualServerAccess = Field(default_factory=VirtualServerAccess)
    instructions: str | None = Field(None, description="shown to clients at initialize")


class McpConfig(ConfigSection):
    """The MCP gateway: upstream servers and the virtual servers over them."""

    servers: dict[ServerName, UpstreamServer] = Field(default_factory=dict)
    virtual_servers: dict[ServerName, VirtualServer] = Field(default_factory=dict)
    session_ttl_s: float = Field(
        86400.0, gt=0, description="a client's Mcp-Session-Id is valid this long after initialize"
    )
    session_key: str | None = Field(
        None,
        repr=False,
        min_length=32,
        description="secret signing session ids, e.g. ${RAYGATE_MCP_SESSION_KEY}; unset: a "
        "random one kept in the gateway's database",
    )
    stream_keepalive_s: float = Field(
        15.0, gt=0, description="a GET notification stream sends a keep-alive comment this often"
    )

    @field_validator("session_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # `${VAR:-}` in YAML: not configured

    @model_validator(mode="after")
    def _servers_exist(self) -> McpConfig:
        for name, virtual in self.virtual_servers.items():
            unknown = [s for s in virtual.servers if s not in self.servers]
            if unknown:
                raise ValueError(f"virtual server {name!r} names unknown servers {unknown}")
        return self

    def enabled(self) -> bool:
        """Whether any virtual server is configured."""
        return bool(self.virtual_servers)
