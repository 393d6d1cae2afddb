"""What a target costs, behind one small protocol: the config's own price, then the table.

The `cost` strategy only asks a `PriceLookup`. The default one (`config_then_table`) takes a
target's `price_per_mtok` from the config when set, and otherwise the accounting price table
(`gateway.accounting.pricing.PriceTable`: the packaged prices under `pricing.prices`), the
same table that meters what requests cost.
"""

from __future__ import annotations

from typing import Protocol

from gateway.accounting.pricing import PriceTable
from gateway.config import GatewayConfig
from gateway.routing.config import Target, TokenPrice


class PriceLookup(Protocol):
    """The price of a target in USD per million tokens, or None when it is not known."""

    def __call__(self, target: Target) -> TokenPrice | None: ...


def configured_price(target: Target) -> TokenPrice | None:
    """The price written on the target in the config (`price_per_mtok`), only."""
    return target.price_per_mtok


def config_then_table(table: PriceTable) -> PriceLookup:
    """A target's own configured price, else the price table's for its `provider/model`."""

    def lookup(target: Target) -> TokenPrice | None:
        if target.price_per_mtok is not None:
            return target.price_per_mtok
        price = table.price(target.label)
        return None if price is None else TokenPrice(input=price.input, output=price.output)

    return lookup


def default_prices(config: GatewayConfig) -> PriceLookup:
    """`config_then_table` over the table built from this config's `pricing` section."""
    presets = {name: p.preset for name, p in config.providers.items()}
    return config_then_table(PriceTable.from_config(config.pricing, provider_presets=presets))


def blended_per_mtok(price: TokenPrice) -> float:
    """One number to rank targets by before the answer's length is known.

    Input and output are weighed alike: a request's output length is not known when its
    target is picked, and a per-alias guess would be one more setting to get wrong.
    """
    return price.input + price.output
