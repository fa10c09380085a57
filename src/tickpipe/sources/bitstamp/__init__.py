"""Bitstamp: the `live_trades` channels over WebSocket v2."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import Endpoints, ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="bitstamp",
    title="Bitstamp",
    streams=("live_trades",),
    default_symbols=("BTC-USD", "ETH-USD"),
    gaps="no: trade ids are global across pairs, so a pair's ids skip and holes cannot be seen",
    backfill=(
        "after a reconnect only: REST transactions (last minute, hour or day) newer than the "
        "last trade id seen; recovers what traded while disconnected up to a day back (times to "
        "the second), not trades lost on a live connection nor older than a day"
    ),
    endpoints=Endpoints("wss://ws.bitstamp.net", "https://www.bitstamp.net"),
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.bitstamp.source import BitstampSource

    stream = INFO.stream(options)
    if stream not in INFO.streams:
        raise ValueError(f"bitstamp stream must be live_trades, not {stream!r}")
    return BitstampSource(symbols, url=INFO.url(options), rest_url=INFO.rest_url(options))


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Normalized symbol -> url_symbol of every Bitstamp pair (`/api/v2/trading-pairs-info/`)."""
    from tickpipe.sources.listing import spellings, symbol_list

    rows = await symbol_list(INFO.rest_url(options), "/api/v2/trading-pairs-info/")
    if not isinstance(rows, list):
        raise RuntimeError(f"bitstamp trading pairs: unexpected answer {str(rows)[:200]}")
    return spellings(rows, lambda row: (row.get("name"), row.get("url_symbol")))
