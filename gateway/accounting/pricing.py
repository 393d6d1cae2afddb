"""What a request cost, in USD, from its token usage (or a local model's GPU time).

Prices are data: the packaged `prices.yaml`, overridden by the config's `pricing.prices`. A
model that neither knows has no cost (`None`): a made-up number would be worse than none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Protocol

import yaml

from gateway.accounting.config import Price, PricingConfig
from gateway.providers.local import LocalUsage

_PER_TOKEN = 1e-6  # prices are per million tokens


class TokenUsage(Protocol):
    """Anything shaped like OpenAI's usage object (chat, completions or embeddings)."""

    prompt_tokens: int


def packaged_prices() -> dict[str, Price]:
    """The prices shipped in `gateway/accounting/prices.yaml`."""
    text = resources.files("gateway.accounting").joinpath("prices.yaml").read_text()
    return {str(key): Price.model_validate(value) for key, value in yaml.safe_load(text).items()}


class PriceTable:
    """Prices by "provider/model" or bare model name, operator overrides first.

    For a target label "P/M" (provider P, configured from preset R) the lookup order is:
    overrides "P/M", "R/M", "M", then packaged "P/M", "R/M", "M"; the first match wins.
    """

    def __init__(
        self,
        overrides: Mapping[str, Price] | None = None,
        *,
        packaged: Mapping[str, Price] | None = None,
        provider_presets: Mapping[str, str | None] | None = None,
        gpu_second_usd: float | None = None,
        cpu_second_usd: float | None = None,
    ) -> None:
        self._overrides = dict(overrides or {})
        self._packaged = dict(packaged if packaged is not None else packaged_prices())
        self._presets = {name: preset for name, preset in (provider_presets or {}).items()}
        self.gpu_second_usd = gpu_second_usd
        self.cpu_second_usd = cpu_second_usd

    @classmethod
    def from_config(
        cls, config: PricingConfig, *, provider_presets: Mapping[str, str | None] | None = None
    ) -> PriceTable:
        """The packaged prices under the config's; `provider_presets` maps each configured
        provider name to its preset, so that "azure-eu/gpt-4o" can find "azure/gpt-4o"."""
        return cls(
            config.prices,
            provider_presets=provider_presets,
            gpu_second_usd=config.gpu_second_usd,
            cpu_second_usd=config.cpu_second_usd,
        )

    def price(self, target_label: str) -> Price | None:
        """The price of a target ("provider/model" or bare "model"), or None if unknown."""
        candidates = self._candidates(target_label)
        for table in (self._overrides, self._packaged):
            for key in candidates:
                found = table.get(key)
                if found is not None:
                    return found
        return None

    def _candidates(self, target_label: str) -> list[str]:
        provider, sep, model = target_label.partition("/")
        if not sep:
            return [target_label]
        keys = [target_label]
        preset = self._presets.get(provider)
        if preset and preset != provider:
            keys.append(f"{preset}/{model}")
        # A model name may itself hold a slash (Groq's "meta-llama/llama-4-scout-..."): the
        # bare name is everything after the provider.
        keys.append(model)
        return keys

    def cost(
        self,
        target_label: str,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
    ) -> float | None:
        """USD for one call, or None when the target has no known price.

        `cached_tokens` are the part of `prompt_tokens` the provider read from its prompt
        cache (OpenAI's convention: prompt_tokens includes them), priced at `cached_input`.
        """
        price = self.price(target_label)
        if price is None:
            return None
        cached = max(0, min(cached_tokens, prompt_tokens))
        cached_rate = price.cached_input if price.cached_input is not None else price.input
        return (
            (prompt_tokens - cached) * price.input
            + cached * cached_rate
            + completion_tokens * price.output
        ) * _PER_TOKEN

    def estimate(
        self, target_labels: Sequence[str], prompt_tokens: int, completion_tokens: int
    ) -> float:
        """A budget reservation's estimate before routing: the dearest of the targets that
        may answer (fallbacks included), 0.0 when none of them has a known price."""
        costs = [self.cost(label, prompt_tokens, completion_tokens) for label in target_labels]
        return max((c for c in costs if c is not None), default=0.0)

    def cost_of_usage(self, target_label: str, usage: TokenUsage) -> float | None:
        """`cost` from an OpenAI usage object (`Usage`, `EmbeddingUsage`, or alike), reading
        `completion_tokens` and `prompt_tokens_details.cached_tokens` where present.

        A local model's usage (`LocalUsage`) is priced by the engine time attributed to the
        request instead: GPU-seconds, or CPU-seconds for a replica on CPU nodes.
        """
        if isinstance(usage, LocalUsage):
            if usage.device == "cpu":
                return self.cost_of_cpu_seconds(usage.device_seconds)
            return self.cost_of_gpu_seconds(usage.device_seconds)
        prompt, completion, cached = usage_tokens(usage)
        return self.cost(target_label, prompt, completion, cached)

    def cost_avoided(
        self, target_label: str, prompt_tokens: int, completion_tokens: int
    ) -> float | None:
        """What a request answered from raygate's cache would have cost at `target_label`.

        Pass the hit's prompt tokens and the cached answer's completion tokens. The prompt is
        priced as uncached input: whether the provider would have had it in its own prompt
        cache is unknowable, and list price is what "saved" is measured against.
        """
        return self.cost(target_label, prompt_tokens, completion_tokens, cached_tokens=0)

    def cost_of_gpu_seconds(self, seconds: float) -> float | None:
        """USD for `seconds` of a local model's GPU time, or None if `gpu_second_usd` is
        unset. A request's share of a batched GPU is for the caller to measure."""
        if self.gpu_second_usd is None:
            return None
        return max(0.0, seconds) * self.gpu_second_usd

    def cost_of_cpu_seconds(self, seconds: float) -> float | None:
        """USD for `seconds` of a local model's CPU time (one CPU for one second each), or
        None if `cpu_second_usd` is unset."""
        if self.cpu_second_usd is None:
            return None
        return max(0.0, seconds) * self.cpu_second_usd


def usage_tokens(usage: TokenUsage) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens of an OpenAI-shaped usage object."""
    prompt = int(usage.prompt_tokens or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    details: Any = getattr(usage, "prompt_tokens_details", None)
    if details is None:
        # The wire models keep prompt_tokens_details as an extra field (a plain dict).
        extra = getattr(usage, "model_extra", None) or {}
        details = extra.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if cached is None and details is not None and not isinstance(details, dict):
        cached = getattr(details, "cached_tokens", None)
    return prompt, completion, int(cached or 0)
