"""Kraken spot: the public WebSocket v2 `trade` channel, with REST backfill of lost trades."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import ExchangeInfo, ExchangeOptions

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
    url="wss://ws.kraken.com/v2",
    rest_url="https://api.kraken.com",
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.kraken.source import KrakenSource

    at = INFO.endpoints(options)
    return KrakenSource(symbols, url=at.url, rest_url=at.rest_url)


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Every Kraken spot pair, normalized (`BTC-USD`) -> v2 spelling (`BTC/USD`), from
    `GET /0/public/AssetPairs`; its `wsname` (`XBT/USD`) is read with XBT as BTC, as v2 does."""
    from tickpipe.sources.kraken.parse import to_kraken
    from tickpipe.sources.rest import RestClient, RestError
    from tickpipe.symbols import SymbolError, normalize_symbol

    base = INFO.endpoints(options).rest_url
    async with RestClient(base) as client:
        answer = await client.get_json("/0/public/AssetPairs")
    if (
        not isinstance(answer, dict)
        or answer.get("error")
        or not isinstance(answer.get("result"), dict)
    ):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise RestError(f"{base}/0/public/AssetPairs", f"unexpected answer: {error!r}")
    out: dict[str, str] = {}
    for pair in answer["result"].values():
        wsname = pair.get("wsname") if isinstance(pair, dict) else None
        if not isinstance(wsname, str):
            continue
        try:
            symbol = normalize_symbol(wsname)
        except SymbolError:
            continue
        out[symbol] = to_kraken(symbol)
    return out
