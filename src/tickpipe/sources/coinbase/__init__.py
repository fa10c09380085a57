"""Coinbase: `market_trades` on Advanced Trade (default) or `matches` on the Exchange feed."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="coinbase",
    title="Coinbase (Advanced Trade or Exchange feed)",
    streams=("advanced", "exchange"),
    default_symbols=("BTC-USD", "ETH-USD"),
    gaps="yes: trade ids are consecutive per product (Exchange heartbeats also carry the last id)",
    backfill="yes: missing trade ids are fetched from the public REST API /products/{id}/trades",
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.coinbase.source import REST_URL, CoinbaseSource

    return CoinbaseSource(
        symbols,
        url=options.url,
        stream=options.stream or INFO.streams[0],
        rest_url=options.rest_url or REST_URL,
    )


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Every listed product, normalized -> Coinbase's product id (`BTC-USD` -> `BTC-USD`), from
    the public Exchange REST API's `GET /products`; delisted products are left out."""
    from tickpipe.sources.coinbase.source import REST_URL
    from tickpipe.sources.rest import RestClient
    from tickpipe.symbols import SymbolError, normalize_symbol

    async with RestClient(options.rest_url or REST_URL) as rest:
        products = await rest.get_json("/products")
    if not isinstance(products, list):
        raise ValueError("coinbase /products did not answer with a list")
    out: dict[str, str] = {}
    for product in products:
        if not isinstance(product, dict) or not isinstance(product.get("id"), str):
            continue
        if product.get("status") == "delisted":
            continue
        try:
            out[normalize_symbol(product["id"])] = product["id"]
        except SymbolError:
            continue
    return out
