"""Provider presets, loaded from the packaged `presets.yaml`, and their table for the docs."""

from __future__ import annotations

from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

ProviderKind = Literal[
    "openai", "azure", "anthropic", "gemini", "bedrock", "vertex", "vertex-anthropic", "cohere"
]
"""The wire formats (and their URL and credential styles) raygate speaks."""

Endpoint = Literal["chat", "completions", "embeddings"]
_ALL_ENDPOINTS: tuple[Endpoint, ...] = ("chat", "completions", "embeddings")


class ProviderPreset(BaseModel):
    """What raygate knows about an upstream before the config says anything."""

    model_config = ConfigDict(extra="forbid")

    kind: ProviderKind
    title: str = ""
    base_url: str | None = None
    api_key_env: str | None = None
    requires_key: bool = True
    auth: Literal["bearer", "api-key", "x-api-key", "x-goog-api-key", "none"] = "bearer"
    endpoints: list[Endpoint] = Field(
        default_factory=lambda: list(_ALL_ENDPOINTS),
        description="served natively; legacy completions elsewhere go through chat",
    )
    unsupported_params: list[str] = Field(default_factory=list)
    extra_params: list[str] = Field(
        default_factory=list,
        description="fields outside the wire models passed on, beyond its wire format's own",
    )
    reasoning_models: list[str] = Field(
        default_factory=list,
        description="shell patterns of model names that take reasoning models' parameters",
    )
    developer_role: bool = Field(
        False, description="the upstream knows the `developer` role (else it is sent as system)"
    )
    responses_api: bool = Field(
        False,
        description="the upstream serves OpenAI's Responses API (`POST {base_url}/responses`): "
        "requests that arrive on /v1/responses are sent there natively, not as chat",
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = Field(
        None, description="the one name the upstream takes for the output limit; None: as sent"
    )
    notes: str = ""


def _load() -> dict[str, ProviderPreset]:
    text = resources.files("gateway.providers").joinpath("presets.yaml").read_text()
    return {name: ProviderPreset.model_validate(v) for name, v in yaml.safe_load(text).items()}


PRESETS: dict[str, ProviderPreset] = _load()


_CLOUD_URLS = {
    "bedrock": "from `aws.region`",
    "vertex": "from `gcp.location`",
    "vertex-anthropic": "from `gcp.location`",
}


def presets_table(presets: dict[str, ProviderPreset] | None = None) -> str:
    """Every preset as a Markdown table (the one `docs/providers.md` carries)."""
    rows = [
        "| preset | provider | wire format | base URL | key variable | endpoints | "
        "refused (or dropped) parameters | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, p in sorted((presets or PRESETS).items()):
        key = f"`{p.api_key_env}`" if p.api_key_env else "none"
        if p.api_key_env and not p.requires_key:
            key += " (optional)"
        refused = ", ".join(f"`{param}`" for param in p.unsupported_params) or "none"
        if p.reasoning_models:
            refused += "; reasoning models: sampling parameters, see below"
        url = f"`{p.base_url}`" if p.base_url else _CLOUD_URLS.get(p.kind, "set `base_url`")
        rows.append(
            f"| `{name}` | {p.title} | {p.kind} | {url} | {key} | "
            f"{', '.join([*p.endpoints, *(['responses'] if p.responses_api else [])])} | "
            f"{refused} | {p.notes} |"
        )
    return "\n".join(rows) + "\n"
