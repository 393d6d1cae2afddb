"""Provider presets, loaded from the packaged `presets.yaml`."""

from __future__ import annotations

from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class ProviderPreset(BaseModel):
    """What raygate knows about an upstream before the config says anything."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["openai", "anthropic", "gemini"]
    base_url: str | None = None
    api_key_env: str | None = None
    requires_key: bool = True
    auth: Literal["bearer", "api-key", "x-api-key", "x-goog-api-key", "none"] = "bearer"
    url_style: Literal["plain", "azure"] = "plain"
    unsupported_params: list[str] = Field(default_factory=list)


def _load() -> dict[str, ProviderPreset]:
    text = resources.files("gateway.providers").joinpath("presets.yaml").read_text()
    return {name: ProviderPreset.model_validate(v) for name, v in yaml.safe_load(text).items()}


PRESETS: dict[str, ProviderPreset] = _load()
