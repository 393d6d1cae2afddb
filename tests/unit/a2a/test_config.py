"""The `a2a` section of the config: agents named for URLs, credentials from the environment."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config


def test_an_agents_token_comes_from_the_environment_and_identity_is_off_by_default() -> None:
    config = parse_config(
        "a2a: {agents: {research: {url: 'http://r:9999', token: '${TOKEN}', groups: [r]}}}",
        env={"TOKEN": "s3cret"},
    )
    agent = config.a2a.agents["research"]
    assert agent.token == "s3cret" and "s3cret" not in repr(agent)
    assert agent.forward_identity.enabled is False
    assert agent.forward_identity.headers("u", "u@x", ("g",)) == {}


@pytest.mark.parametrize(
    ("agent", "field"),
    [
        ("{'bad name': {url: 'http://r'}}", "a2a.agents"),
        ("{r: {url: 'ftp://r'}}", "a2a.agents.r.url"),
        ("{r: {url: 'http://r', tokn: x}}", "a2a.agents.r.tokn"),
    ],
)
def test_a_wrong_agent_is_refused_naming_the_field(agent: str, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_config(f"a2a: {{agents: {agent}}}", env={})
