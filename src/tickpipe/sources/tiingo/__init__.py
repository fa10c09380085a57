"""Tiingo crypto: trades of many venues over the crypto firehose; each trade names its venue."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import Endpoints, ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="tiingo",
    title="Tiingo crypto (trades of many venues)",
    streams=("trade",),
    default_symbols=("BTC-USD", "ETH-USD"),
    gaps=(
        "no: Tiingo gives no trade ids or sequence numbers, so a lost trade cannot be told "
        "from a quiet market; each reconnect is reported as a Disconnect event"
    ),
    backfill=(
        "no: Tiingo's REST API serves crypto prices as resampled bars and top-of-book, not "
        "individual trades, so trades missed while disconnected are not refetched"
    ),
    token_env="TIINGO_TOKEN",
    endpoints=Endpoints("wss://api.tiingo.com/crypto", "https://api.tiingo.com"),
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.tiingo.source import TiingoSource

    return TiingoSource(symbols, options.token, url=INFO.url(options))


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """`BTC-USD` -> `btcusd` for every Tiingo crypto ticker, from `/tiingo/crypto`.

    The token goes in the `Authorization: Token ...` header, never in a URL.
    """
    from tickpipe.sources.tiingo.symbols import fetch_tiingo_symbols

    return await fetch_tiingo_symbols(INFO.rest_url(options), options.token)
