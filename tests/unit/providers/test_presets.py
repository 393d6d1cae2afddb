"""The presets: enough of them, each usable, and docs/providers.md in step with them."""

from __future__ import annotations

from pathlib import Path

import httpx

from gateway.providers.config import ProviderConfig
from gateway.providers.presets import PRESETS, presets_table
from gateway.providers.registry import build_provider

DOCS = Path(__file__).resolve().parents[3] / "docs" / "providers.md"


def test_at_least_35_presets_each_building_its_adapter() -> None:
    assert len(PRESETS) >= 35
    for name, preset in PRESETS.items():
        fields: dict[str, object] = {"preset": name, "api_key": "k"}
        if preset.base_url is None and preset.kind not in ("bedrock", "vertex", "vertex-anthropic"):
            fields["base_url"] = "https://example.invalid/v1"
        fields |= {"aws": {"region": "us-east-1"}} if preset.kind == "bedrock" else {}
        fields |= {"gcp": {"project": "p"}} if preset.kind.startswith("vertex") else {}
        config = ProviderConfig.model_validate(fields)
        assert config.disabled_reason() is None, name
        adapter = build_provider(name, config, transport=httpx.MockTransport(_never_called))
        assert adapter.preset.kind == preset.kind
        assert preset.title, f"{name} has no title"


def test_docs_carry_the_presets_table() -> None:
    assert presets_table() in DOCS.read_text()


def _never_called(request: httpx.Request) -> httpx.Response:
    raise AssertionError("building an adapter calls nothing")
