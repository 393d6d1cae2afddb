"""Prices: the packaged table, the lookup order, config overrides, cached tokens, GPU time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.accounting.config import Price, PricingConfig
from gateway.accounting.pricing import PriceTable, packaged_prices
from gateway.protocol.openai import EmbeddingUsage, Usage


def test_every_packaged_price_is_valid_and_the_simulator_models_cost_something() -> None:
    prices = packaged_prices()
    assert len(prices) > 50
    for model in ("sim-small", "sim-large", "claude-sim", "gemini-sim", "sim-embed"):
        assert prices[model].input > 0, model
    table = PriceTable()
    assert table.cost("simulator/sim-small", 1_000_000, 1_000_000) == pytest.approx(2.0)


def test_common_models_of_each_provider_are_priced() -> None:
    table = PriceTable()
    for label in (
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "openai/gpt-4.1-nano",
        "openai/o3-mini",
        "openai/text-embedding-3-small",
        "anthropic/claude-sonnet-4-5",
        "anthropic/claude-3-5-haiku-latest",
        "gemini/gemini-2.0-flash",
        "gemini/gemini-2.5-pro",
        "mistral/mistral-small-latest",
        "groq/llama-3.3-70b-versatile",
    ):
        assert table.price(label) is not None, label


def test_an_unknown_model_has_no_cost_rather_than_a_guess() -> None:
    table = PriceTable()
    assert table.cost("openai/gpt-9-ultra", 10, 10) is None
    assert table.cost("my-local-model", 10, 10) is None
    # Groq's open-weight models are priced for Groq only; served by Ollama they cost nothing.
    assert table.cost("ollama/llama-3.3-70b-versatile", 10, 10) is None


def test_gpt_4o_costs_its_list_price() -> None:
    # 1000 prompt tokens at $2.50/M and 500 completion tokens at $10/M.
    assert PriceTable().cost("openai/gpt-4o", 1000, 500) == pytest.approx(0.0025 + 0.005)


def test_cached_prompt_tokens_cost_the_cached_input_price() -> None:
    table = PriceTable({"m": Price(input=2.0, output=8.0, cached_input=0.5)}, packaged={})
    # 800 of the 1000 prompt tokens came from the provider's cache.
    assert table.cost("m", 1000, 0, cached_tokens=800) == pytest.approx((200 * 2 + 800 * 0.5) / 1e6)
    # More cached tokens than prompt tokens is impossible: capped at the prompt.
    assert table.cost("m", 100, 0, cached_tokens=500) == pytest.approx(100 * 0.5 / 1e6)


def test_cached_tokens_cost_the_input_price_when_no_cached_price_is_known() -> None:
    table = PriceTable({"m": Price(input=2.0, output=8.0)}, packaged={})
    assert table.cost("m", 1000, 0, cached_tokens=800) == table.cost("m", 1000, 0)


def test_provider_model_beats_the_bare_model_in_the_same_table() -> None:
    packaged = {"gpt-4o": Price(input=1, output=1), "azure/gpt-4o": Price(input=2, output=2)}
    table = PriceTable(packaged=packaged)
    assert table.cost("azure/gpt-4o", 1_000_000, 0) == pytest.approx(2)
    assert table.cost("openai/gpt-4o", 1_000_000, 0) == pytest.approx(1)
    assert table.cost("gpt-4o", 1_000_000, 0) == pytest.approx(1)


def test_a_configured_provider_finds_prices_keyed_by_its_preset() -> None:
    packaged = {"gpt-4o": Price(input=1, output=1), "azure/gpt-4o": Price(input=2, output=2)}
    table = PriceTable(packaged=packaged, provider_presets={"azure-eu": "azure", "local": None})
    assert table.cost("azure-eu/gpt-4o", 1_000_000, 0) == pytest.approx(2)
    assert table.cost("local/gpt-4o", 1_000_000, 0) == pytest.approx(1)


def test_a_configured_price_beats_every_packaged_one_even_when_less_specific() -> None:
    packaged = {"azure/gpt-4o": Price(input=2, output=2)}
    table = PriceTable({"gpt-4o": Price(input=3, output=3)}, packaged=packaged)
    assert table.cost("azure/gpt-4o", 1_000_000, 0) == pytest.approx(3)
    exact = PriceTable(
        {"gpt-4o": Price(input=3, output=3), "azure/gpt-4o": Price(input=4, output=4)},
        packaged=packaged,
    )
    assert exact.cost("azure/gpt-4o", 1_000_000, 0) == pytest.approx(4)


def test_config_overrides_the_packaged_price_of_a_real_model() -> None:
    config = PricingConfig.model_validate(
        {"prices": {"openai/gpt-4o": {"input": 2.0, "output": 6.0, "cached_input": 1.0}}}
    )
    table = PriceTable.from_config(config)
    assert table.cost("openai/gpt-4o", 1_000_000, 1_000_000) == pytest.approx(8.0)
    # Another provider serving gpt-4o keeps the packaged (bare-name) price.
    assert table.cost("azure/gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)


def test_a_model_name_holding_a_slash_is_found() -> None:
    table = PriceTable()
    label = "groq/meta-llama/llama-4-scout-17b-16e-instruct"
    assert table.cost(label, 1_000_000, 0) == pytest.approx(0.11)


def test_a_price_key_that_names_no_model_is_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="openai/"):
        PricingConfig.model_validate({"prices": {"openai/": {"input": 1}}})
    with pytest.raises(ValidationError, match="input"):
        PricingConfig.model_validate({"prices": {"m": {"input": -1}}})


def test_usage_objects_are_priced_with_their_cached_tokens() -> None:
    table = PriceTable({"m": Price(input=2.0, output=8.0, cached_input=0.5)}, packaged={})
    usage = Usage.model_validate(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 100,
            "total_tokens": 1100,
            "prompt_tokens_details": {"cached_tokens": 600},
        }
    )
    assert table.cost_of_usage("p/m", usage) == table.cost("m", 1000, 100, cached_tokens=600)
    embedding = EmbeddingUsage(prompt_tokens=1000, total_tokens=1000)
    assert table.cost_of_usage("m", embedding) == pytest.approx(1000 * 2 / 1e6)


def test_the_cost_avoided_by_a_cache_hit_is_the_uncached_list_price() -> None:
    table = PriceTable()
    assert table.cost_avoided("openai/gpt-4o-mini", 1000, 200) == table.cost(
        "openai/gpt-4o-mini", 1000, 200
    )
    assert table.cost_avoided("nowhere/unknown", 1000, 200) is None


def test_gpu_seconds_are_priced_only_when_a_price_is_set() -> None:
    assert PriceTable().cost_of_gpu_seconds(10) is None
    table = PriceTable.from_config(PricingConfig(gpu_second_usd=0.0008))
    assert table.cost_of_gpu_seconds(2.5) == pytest.approx(0.002)
    assert table.cost_of_gpu_seconds(-1) == 0.0


def test_an_estimate_before_routing_takes_the_dearest_priced_target() -> None:
    table = PriceTable()
    targets = ["openai/gpt-4o-mini", "openai/gpt-4o", "local/unknown-model"]
    assert table.estimate(targets, 1000, 500) == table.cost("openai/gpt-4o", 1000, 500)
    assert table.estimate(["local/unknown-model"], 1000, 500) == 0.0
