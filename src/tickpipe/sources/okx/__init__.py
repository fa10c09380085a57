"""OKX spot: every trade (`trades-all`) or taker-order aggregates (`trades`) over WebSocket v5."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tickpipe.sources import Source
from tickpipe.sources.registry import Endpoints, ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="okx",
    title="OKX spot",
    streams=("trades-all", "trades"),
    default_symbols=("BTC-USDT", "ETH-USDT"),
    gaps="yes: trade ids are consecutive per instrument (on `trades`, a row covers `count` ids)",
    backfill=(
        "yes: REST history-trades (last 3 months) refetches every hole in the trade ids and, on "
        "`trades-all`, everything after the last trade seen before a reconnect; on `trades` only "
        "holes between two received rows, as single trades"
    ),
    endpoints=Endpoints("wss://ws.okx.com:8443", "https://www.okx.com"),
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.okx.source import OkxSource

    return OkxSource(
        symbols, url=INFO.url(options), rest_url=INFO.rest_url(options), stream=INFO.stream(options)
    )


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Normalized symbol -> instId of every OKX spot instrument (public/instruments)."""
    from tickpipe.sources.listing import spellings, symbol_list

    path, params = "/api/v5/public/instruments", {"instType": "SPOT"}
    answer = await symbol_list(INFO.rest_url(options), path, params)
    if not isinstance(answer, dict) or str(answer.get("code")) != "0":
        raise RuntimeError(f"okx instruments: unexpected answer {str(answer)[:200]}")

    def pick(row: dict[str, Any]) -> tuple[Any, Any]:
        base, quote = row.get("baseCcy"), row.get("quoteCcy")
        return (f"{base}-{quote}" if base and quote else row.get("instId")), row.get("instId")

    return spellings(answer.get("data") or [], pick)
