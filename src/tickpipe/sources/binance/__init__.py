"""Binance spot: `trade` or `aggTrade` WebSocket streams with REST backfill, or a REST ticker."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import Endpoints, ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="binance",
    title="Binance spot",
    streams=("trade", "aggTrade", "ticker"),
    default_symbols=("BTC-USDT", "ETH-USDT"),
    gaps="yes: trade and aggregate trade ids are consecutive per symbol (ticker: samples, none)",
    backfill=(
        "yes: holes in the ids and whatever a reconnect missed are fetched again from "
        "/api/v3/historicalTrades (trade) or /api/v3/aggTrades (aggTrade), no API key needed"
    ),
    endpoints=Endpoints("wss://stream.binance.com:9443", "https://api.binance.com"),
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    """`trade`/`aggTrade`: the WebSocket stream; `ticker`: last prices polled over REST."""
    stream = INFO.stream(options)
    if stream == "ticker":
        from tickpipe.sources.binance.ticker import BinanceTickerSource

        poll_every = options.poll_every or 5.0
        return BinanceTickerSource(symbols, rest_url=INFO.rest_url(options), poll_every=poll_every)
    from tickpipe.sources.binance.source import BinanceSource

    return BinanceSource(
        symbols, url=INFO.url(options), stream=stream, rest_url=INFO.rest_url(options)
    )


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Every symbol Binance trades now, normalized -> Binance's spelling (`BTC-USDT` ->
    `BTCUSDT`), from `GET /api/v3/exchangeInfo`."""
    from tickpipe.sources.binance.rest import fetch_symbols as fetch
    from tickpipe.sources.rest import RestClient, RestConfig

    config = RestConfig(timeout=5.0, attempts=2, backoff_initial=0.2, backoff_max=1.0)
    async with RestClient(INFO.rest_url(options), config) as rest:
        return await fetch(rest)
