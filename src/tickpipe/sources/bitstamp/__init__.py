"""Bitstamp: the `live_trades` channels over WebSocket v2."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import ExchangeInfo, ExchangeOptions

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
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.bitstamp.source import DEFAULT_REST_URL, DEFAULT_URL, BitstampSource

    if options.stream not in (None, *INFO.streams):
        raise ValueError(f"bitstamp stream must be live_trades, not {options.stream!r}")
    return BitstampSource(
        symbols, url=options.url or DEFAULT_URL, rest_url=options.rest_url or DEFAULT_REST_URL
    )


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Normalized symbol -> url_symbol of every Bitstamp pair (`/api/v2/trading-pairs-info/`)."""
    from tickpipe.sources.bitstamp.source import DEFAULT_REST_URL
    from tickpipe.sources.listing import spellings, symbol_list

    rows = await symbol_list(options, DEFAULT_REST_URL, "/api/v2/trading-pairs-info/")
    if not isinstance(rows, list):
        raise RuntimeError(f"bitstamp trading pairs: unexpected answer {str(rows)[:200]}")
    return spellings(rows, lambda row: (row.get("name"), row.get("url_symbol")))
