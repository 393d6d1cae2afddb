"""The adapter for each wire format, built from a provider's config."""

from __future__ import annotations

import httpx

from gateway.config import ProviderConfig
from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.base import Provider
from gateway.providers.gemini import GeminiProvider
from gateway.providers.openai_compat import OpenAICompatible

_ADAPTERS: dict[str, type[Provider]] = {
    "openai": OpenAICompatible,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
}


def build_provider(
    name: str, config: ProviderConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    """The adapter for a provider's wire format, with its own connection pool."""
    return _ADAPTERS[config.resolved_preset.kind](name, config, transport=transport)
