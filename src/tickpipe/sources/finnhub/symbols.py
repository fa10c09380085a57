"""Finnhub's crypto symbol lists, for rejecting unknown symbols at start-up."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tickpipe.sources.aggregated import normalize_venue, redact
from tickpipe.sources.finnhub.parse import DEFAULT_VENUES
from tickpipe.sources.rest import RestClient, RestConfig, RestError
from tickpipe.symbols import SymbolError, normalize_symbol


async def fetch_finnhub_symbols(
    rest_url: str,
    token: str | None,
    config: RestConfig | None = None,
    venues: Sequence[str] | None = DEFAULT_VENUES,
    prefixed: bool = False,
) -> dict[str, str]:
    """`BASE-QUOTE` -> Finnhub's spelling (`BINANCE:BTCUSDT`) over `venues` (the first venue
    listing a pair wins), or over every venue `/crypto/exchange` lists when None. With
    `prefixed`, keys name the venue too (`binance:BTC-USDT`)."""
    if not token:
        raise ValueError("finnhub needs an API token: set FINNHUB_TOKEN")
    out: dict[str, str] = {}
    try:
        async with RestClient(rest_url, config, headers={"X-Finnhub-Token": token}) as client:
            listed: Any = venues
            if listed is None:
                listed = await client.get_json("crypto/exchange")
            for venue in listed if isinstance(listed, list | tuple) else []:
                rows: Any = await client.get_json("crypto/symbol", {"exchange": str(venue)})
                for row in rows if isinstance(rows, list) else []:
                    entry = _entry(str(venue), row, prefixed)
                    if entry is not None:
                        out.setdefault(*entry)
    except RestError as exc:  # the body of an error answer could quote the token
        reason = str(exc).removeprefix(f"GET {exc.url}: ")
        raise RestError(redact(exc.url, token), redact(reason, token), exc.status) from None
    return out


def _entry(venue: str, row: Any, prefixed: bool) -> tuple[str, str] | None:
    if not isinstance(row, dict):
        return None
    raw, display = row.get("symbol"), row.get("displaySymbol")
    if not isinstance(raw, str) or not isinstance(display, str):
        return None
    try:
        symbol = normalize_symbol(display)
    except SymbolError:
        return None
    return (f"{normalize_venue(venue)}:{symbol}" if prefixed else symbol), raw
