"""The adapter for each wire format, built from a provider's config."""

from __future__ import annotations

import httpx

from gateway.providers.anthropic import AnthropicProvider
from gateway.providers.azure import AzureOpenAI
from gateway.providers.base import Provider
from gateway.providers.bedrock import BedrockProvider
from gateway.providers.cohere import CohereProvider
from gateway.providers.config import ProviderConfig
from gateway.providers.gemini import GeminiProvider
from gateway.providers.openai_compat import OpenAICompatible
from gateway.providers.presets import ProviderKind
from gateway.providers.vertex import VertexAnthropic, VertexGemini

_ADAPTERS: dict[ProviderKind, type[Provider]] = {
    "openai": OpenAICompatible,
    "azure": AzureOpenAI,
    "anthropic": AnthropicProvider,
    "gemini": GeminiProvider,
    "bedrock": BedrockProvider,
    "vertex": VertexGemini,
    "vertex-anthropic": VertexAnthropic,
    "cohere": CohereProvider,
}


def build_provider(
    name: str, config: ProviderConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> Provider:
    """The adapter for a provider's wire format, with its own connection pool."""
    return _ADAPTERS[config.resolved_preset.kind](name, config, transport=transport)
