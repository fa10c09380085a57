"""Kraken spot: the public WebSocket v2 `trade` channel, with REST backfill of lost trades."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import Endpoints, ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="kraken",
    title="Kraken spot (WebSocket v2)",
    streams=("trade",),
    default_symbols=("BTC-USD", "ETH-USD"),
    gaps="yes: v2 trade ids are sequence numbers per pair",
    backfill=(
        "yes: missing ids are fetched from REST /0/public/Trades (same per-pair trade ids), "
        "paging its time cursor from the last trade seen; each reconnect also asks for the "
        "50-trade snapshot"
    ),
    endpoints=Endpoints("wss://ws.kraken.com/v2", "https://api.kraken.com"),
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.kraken.source import KrakenSource

    return KrakenSource(symbols, url=INFO.url(options), rest_url=INFO.rest_url(options))


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Every Kraken spot pair, normalized (`BTC-USD`) -> v2 spelling (`BTC/USD`), from
    `GET /0/public/AssetPairs`; its `wsname` (`XBT/USD`) is read with XBT as BTC, as v2 does."""
    from tickpipe.sources.kraken.parse import to_kraken
    from tickpipe.sources.listing import spellings, symbol_list
    from tickpipe.sources.rest import RestError

    base, path = INFO.rest_url(options), "/0/public/AssetPairs"
    answer = await symbol_list(base, path)
    if (
        not isinstance(answer, dict)
        or answer.get("error")
        or not isinstance(answer.get("result"), dict)
    ):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise RestError(f"{base}{path}", f"unexpected answer: {error!r}")
    # the v2 spelling follows from the normalized pair, so only the pair is picked
    listed = spellings(answer["result"].values(), lambda pair: (pair.get("wsname"), ""))
    return {symbol: to_kraken(symbol) for symbol in listed}
