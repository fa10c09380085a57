"""Coinbase: `market_trades` on Advanced Trade (default) or `matches` on the Exchange feed."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import Endpoints, ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="coinbase",
    title="Coinbase (Advanced Trade or Exchange feed)",
    streams=("advanced", "exchange"),
    default_symbols=("BTC-USD", "ETH-USD"),
    gaps="yes: trade ids are consecutive per product (Exchange heartbeats also carry the last id)",
    backfill="yes: missing trade ids are fetched from the public REST API /products/{id}/trades",
    # the WebSocket endpoint depends on the stream: the source picks it
    endpoints=Endpoints(rest_url="https://api.exchange.coinbase.com"),
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.coinbase.source import CoinbaseSource

    return CoinbaseSource(
        symbols, url=INFO.url(options), stream=INFO.stream(options), rest_url=INFO.rest_url(options)
    )


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Every listed product, normalized -> Coinbase's product id (`BTC-USD` -> `BTC-USD`), from
    the public Exchange REST API's `GET /products`; delisted products are left out."""
    from tickpipe.sources.listing import spellings, symbol_list

    products = await symbol_list(INFO.rest_url(options), "/products")
    if not isinstance(products, list):
        raise ValueError("coinbase /products did not answer with a list")
    listed = [p for p in products if not isinstance(p, dict) or p.get("status") != "delisted"]
    return spellings(listed, lambda product: (product.get("id"), product.get("id")))
