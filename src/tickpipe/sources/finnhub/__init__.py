"""Finnhub: crypto trades of many venues over one WebSocket; each trade names its venue."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import Endpoints, ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="finnhub",
    title="Finnhub (crypto trades of many venues)",
    streams=("trade",),
    default_symbols=("BTC-USDT", "ETH-USDT"),
    gaps=(
        "no: Finnhub gives no trade ids or sequence numbers, so a lost trade cannot be told "
        "from a quiet market; each reconnect is reported as a Disconnect event"
    ),
    backfill=(
        "no: Finnhub's REST API has no tick-level trade history for crypto (candles only), so "
        "trades missed while disconnected are not refetched"
    ),
    token_env="FINNHUB_TOKEN",
    endpoints=Endpoints("wss://ws.finnhub.io", "https://finnhub.io/api/v1"),
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    """A Finnhub source. The wiring hands over normalized pairs (`BTC-USDT`), which are
    subscribed on the default venue, Binance (`BINANCE:BTCUSDT`); `FinnhubSource` itself also
    takes `venue:PAIR` and a venue list."""
    from tickpipe.sources.finnhub.source import FinnhubSource

    return FinnhubSource(symbols, options.token, url=INFO.url(options))


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """`BTC-USDT` -> `BINANCE:BTCUSDT` for every pair of the default venue(s).

    From `/crypto/symbol?exchange=binance`; the token goes in the `X-Finnhub-Token` header,
    never in a URL that an error message could quote.
    """
    from tickpipe.sources.finnhub.symbols import fetch_finnhub_symbols

    return await fetch_finnhub_symbols(INFO.rest_url(options), options.token)
