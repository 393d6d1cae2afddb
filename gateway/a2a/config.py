"""Configuration of the A2A agents the gateway fronts.

    a2a:
      public_url: https://gateway.example.org   # unset: the URL each request came in on
      agents:
        research:
          url: http://research-agent.internal:9999     # its card: <url>/.well-known/agent-card.json
          token: ${RESEARCH_AGENT_TOKEN}                 # sent upstream, never shown to callers
          groups: [research, "*-analysts"]               # who may use it ("*": everyone)
          forward_identity: {enabled: true}              # X-Raygate-User / -Email / -Groups

An agent's card is fetched from its well-known path and kept `card_ttl_s` seconds (or given
inline as `card`); callers see it with its URL rewritten to the gateway's `/a2a/<name>`.
Rate limits use the model limits of the name `a2a/<name>` (`rate_limits.models`).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from gateway.section import ConfigSection

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ForwardIdentity(ConfigSection):
    """Whether, and in which headers, the caller's identity travels to the agent."""

    enabled: bool = Field(False, description="send the caller's identity headers upstream")
    user_header: str = Field("X-Raygate-User", description="carries the caller's user id")
    email_header: str = Field("X-Raygate-Email", description="carries the caller's email")
    groups_header: str = Field(
        "X-Raygate-Groups", description="carries the caller's groups, comma-separated"
    )

    def headers(self, user: str, email: str | None, groups: tuple[str, ...]) -> dict[str, str]:
        """The identity headers for one caller (none when switched off)."""
        if not self.enabled:
            return {}
        out = {self.user_header: user, self.groups_header: ",".join(groups)}
        if email:
            out[self.email_header] = email
        return out


class AgentConfig(ConfigSection):
    """One upstream A2A agent."""

    url: str = Field(description="the agent's base URL; its card is at its well-known path")
    rpc_url: str | None = Field(
        None, description="its JSON-RPC endpoint; unset: the card's JSON-RPC interface URL"
    )
    card: dict[str, Any] | None = Field(
        None, description="the agent's card inline (JSON form); unset: fetched from the agent"
    )
    card_ttl_s: float = Field(300.0, ge=0, description="how long a fetched card is kept")
    token: str | None = Field(
        None, repr=False, description="bearer sent to the agent, e.g. ${AGENT_TOKEN}"
    )
    groups: list[str] = Field(
        default_factory=list,
        description="directory groups whose members may use it (shell patterns; '*': all)",
    )
    forward_identity: ForwardIdentity = Field(default_factory=ForwardIdentity)
    timeout_s: float = Field(
        60.0, gt=0, description="an answer, or the next streamed event, within this long"
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="connecting to the agent")

    @field_validator("token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("url", "rpc_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value


class A2AConfig(ConfigSection):
    """The A2A agents reachable through `/a2a/<name>`."""

    public_url: str | None = Field(
        None,
        description="the gateway's URL as clients reach it, for the cards it serves; "
        "unset: the URL each request came in on",
    )
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    task_ttl_s: float = Field(
        30 * 86400.0,
        gt=0,
        description="how long the gateway remembers who started a task (after that, only "
        "new tasks are reachable)",
    )

    @field_validator("agents")
    @classmethod
    def _names(cls, agents: dict[str, AgentConfig]) -> dict[str, AgentConfig]:
        for name in agents:
            if not _NAME.match(name):
                raise ValueError(f"agent name {name!r}: letters, digits, '_', '.', '-' only")
        return agents
