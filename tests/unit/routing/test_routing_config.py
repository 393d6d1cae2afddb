"""The routing part of the config: defaults that keep today's behaviour, overrides, errors."""

from __future__ import annotations

import pytest

from gateway.config import ConfigError, parse_config
from gateway.routing.config import TokenPrice

BASE = "providers:\n  sim: {preset: simulator}\n"


def test_defaults_try_each_target_once_and_check_nothing() -> None:
    config = parse_config(BASE + "models:\n  m: {targets: [sim/a, sim/b]}\n", env={})
    alias = config.models["m"]
    assert alias.strategy == "priority" and alias.fallback_on == []
    assert config.routing.retry_for(alias).max_attempts == 1
    assert config.routing.health_checks == {}


def test_alias_retry_overrides_only_the_fields_it_sets() -> None:
    text = BASE + (
        "routing:\n  retry: {base_delay: 0.5, deadline: 9}\n"
        "models:\n  m: {retry: {max_attempts: 3}, targets: [sim/a]}\n"
    )
    config = parse_config(text, env={})
    retry = config.routing.retry_for(config.models["m"])
    assert (retry.max_attempts, retry.base_delay, retry.deadline) == (3, 0.5, 9)


def test_a_single_price_applies_to_input_and_output() -> None:
    text = BASE + "models:\n  m: {targets: [{provider: sim, model: a, price_per_mtok: 2}]}\n"
    target = parse_config(text, env={}).models["m"].targets[0]
    assert target.price_per_mtok == TokenPrice(input=2, output=2)


def test_unknown_strategy_names_the_field_and_line() -> None:
    text = BASE + "models:\n  m:\n    strategy: fastest\n    targets: [sim/a]\n"
    with pytest.raises(ConfigError, match=r":5: models.m.strategy"):
        parse_config(text, env={})


def test_unknown_fallback_reason_is_refused() -> None:
    text = BASE + "models:\n  m: {fallback_on: [everything], targets: [sim/a]}\n"
    with pytest.raises(ConfigError, match=r"models.m.fallback_on.0"):
        parse_config(text, env={})


def test_breaker_failure_rate_above_one_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"routing.breaker.failure_rate"):
        parse_config(BASE + "routing:\n  breaker: {failure_rate: 1.5}\n", env={})
