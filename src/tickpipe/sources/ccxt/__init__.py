"""The long tail of exchanges through ccxt's WebSocket API (ccxt.pro), an optional extra.

The stream names the ccxt exchange (`[exchanges.ccxt] stream = "kucoin"`); ccxt itself is
imported only when a source is built or run, so tickpipe starts without it installed.
"""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import ExchangeInfo, ExchangeOptions

# ccxt.pro.exchanges of ccxt 4.5.90; the default first. A test checks each still exists.
CCXT_EXCHANGES = (
    "kucoin", "alpaca", "apex", "aster", "backpack", "bequant", "binance", "binancecoinm",
    "binanceus", "binanceusdm", "bingx", "bitfinex", "bitget", "bithumb", "bitopro", "bitrue",
    "bitstamp", "bittrade", "bitvavo", "blockchaincom", "blofin", "bullish", "bybit", "bybiteu",
    "bybitid", "bydfi", "cex", "coinbase", "coinbaseexchange", "coinbaseinternational",
    "coincheck", "coinone", "cryptocom", "deepcoin", "deribit", "derive", "dydx", "extended",
    "gate", "gateeu", "gemini", "grvt", "hashkey", "hitbtc", "hollaex", "htx", "hyperliquid",
    "independentreserve", "kraken", "krakenfutures", "kucoinfutures", "lbank", "lighter", "luno",
    "mexc", "modetrade", "mudrex", "myokx", "nado", "ndax", "okx", "okxus", "onetrading", "p2b",
    "pacifica", "paradex", "phemex", "poloniex", "polymarket", "toobit", "upbit", "weex",
    "whitebit", "woo", "woofipro", "xt",
)  # fmt: skip

INFO = ExchangeInfo(
    name="ccxt",
    title="Any exchange ccxt streams (optional extra: pip install 'tickpipe[ccxt]')",
    streams=CCXT_EXCHANGES,
    default_symbols=("BTC-USDT",),
    gaps="no: ccxt gives no per-exchange promise that trade ids are consecutive",
    backfill=(
        "yes where the exchange has REST trades: after a reconnect, ccxt's fetch_trades "
        "since the last trade seen (up to 10,000 per symbol), de-duplicated by trade id"
    ),
)

INSTALL_HINT = "the ccxt source needs the ccxt extra: pip install 'tickpipe[ccxt]'"


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    """Trades of `symbols` on the ccxt exchange named by `options.stream` (default kucoin)."""
    import importlib.util

    from tickpipe.sources.ccxt.source import CcxtMissing, CcxtSource

    if importlib.util.find_spec("ccxt") is None:  # fail at start-up, not at the first trade
        raise CcxtMissing(INSTALL_HINT)
    return CcxtSource(options.stream or INFO.streams[0], symbols)


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Spot symbols of the ccxt exchange, normalized -> the exchange's own id, from ccxt's
    `load_markets` (the exchange's public symbol list)."""
    from tickpipe.sources.ccxt.source import fetch_spot_symbols

    return await fetch_spot_symbols(options.stream or INFO.streams[0])
