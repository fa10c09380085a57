"""Binance spot: the `trade` (or `aggTrade`) stream over combined WebSocket streams."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="binance",
    title="Binance spot",
    streams=("trade", "aggTrade"),
    default_symbols=("BTC-USDT", "ETH-USDT"),
    gaps="yes: trade ids are consecutive per symbol",
    backfill="not yet: gaps are reported as events, not refetched",
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.binance.source import DEFAULT_URL, BinanceSource

    return BinanceSource(
        symbols, url=options.url or DEFAULT_URL, stream=options.stream or INFO.streams[0]
    )
