"""Agent Cards as the gateway shows them: the agent's own card, pointed at the gateway.

A client that reads a card talks to the URL in it; the card a caller gets from the gateway
names one JSON-RPC interface, the gateway's `/a2a/<name>`, with the protocol version of the
agent's interface it forwards to, and the gateway's bearer authentication in place of the
agent's own schemes (the agent's credentials stay in the gateway). Signatures are dropped (they
signed the agent's URL, not the gateway's), and so are the extended card and push
notifications, which the gateway does not forward.

Parsing and serialising go through `a2a-sdk`'s own card model (`parse_agent_card`,
`agent_card_to_dict`), so a 0.3 card is read as 1.0 and served with 0.3's fields beside.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from a2a.client.card_resolver import parse_agent_card
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types.a2a_pb2 import (
    AgentCard,
    AgentInterface,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from google.protobuf.json_format import ParseError
from packaging.version import InvalidVersion, Version

from gateway.errors import UpstreamError

JSONRPC = "JSONRPC"
SCHEME = "raygate"


@dataclass(frozen=True, slots=True)
class AgentCardView:
    """An agent's card as read from the agent, and where its JSON-RPC endpoint is."""

    card: AgentCard
    interface: AgentInterface  # the JSON-RPC interface the gateway forwards to

    @classmethod
    def parse(cls, data: Any, *, name: str) -> AgentCardView:
        """The card of agent `name` from its JSON form (UpstreamError when it is not a card
        or offers no JSON-RPC interface)."""
        if not isinstance(data, dict):
            raise UpstreamError(f"The agent {name!r} served a card that is not a JSON object.")
        try:
            card = parse_agent_card(dict(data))
        except (ParseError, ValueError, TypeError) as exc:
            raise UpstreamError(f"The agent {name!r} served an invalid card: {exc}") from None
        interface = best_interface(list(card.supported_interfaces))
        if interface is None:
            raise UpstreamError(f"The agent {name!r} offers no JSON-RPC interface.")
        return cls(card, interface)

    def for_caller(self, endpoint: str) -> dict[str, Any]:
        """The card a caller sees: its one interface the gateway's `endpoint`."""
        card = AgentCard()
        card.CopyFrom(self.card)
        del card.supported_interfaces[:]
        card.supported_interfaces.append(
            AgentInterface(
                url=endpoint,
                protocol_binding=JSONRPC,
                protocol_version=self.interface.protocol_version,
            )
        )
        del card.signatures[:]
        card.capabilities.extended_agent_card = False
        card.capabilities.push_notifications = False
        card.security_schemes.clear()
        card.security_schemes[SCHEME].CopyFrom(
            SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    description="the gateway's credential: an API key or an SSO token",
                )
            )
        )
        del card.security_requirements[:]
        card.security_requirements.append(SecurityRequirement(schemes={SCHEME: StringList()}))
        return agent_card_to_dict(card)


def best_interface(interfaces: list[AgentInterface]) -> AgentInterface | None:
    """The JSON-RPC interface a client of `a2a-sdk` would pick: version 1.0 first, then the
    first newer one, then the first of 0.3 or later, then one without a version."""
    candidates = [i for i in interfaces if i.protocol_binding == JSONRPC]
    exact = newer = supported = unversioned = None
    for interface in candidates:
        if not interface.protocol_version:
            unversioned = unversioned or interface
            continue
        try:
            version = Version(interface.protocol_version)
        except InvalidVersion:
            continue
        if (version.major, version.minor) == (1, 0):
            exact = exact or interface
        elif (version.major, version.minor) > (1, 0):
            newer = newer or interface
        elif (version.major, version.minor) >= (0, 3):
            supported = supported or interface
    return exact or newer or supported or unversioned
