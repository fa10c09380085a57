"""Bybit spot: the v5 public `publicTrade` stream, caught up over REST after reconnects."""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.sources import Source
from tickpipe.sources.registry import Endpoints, ExchangeInfo, ExchangeOptions

INFO = ExchangeInfo(
    name="bybit",
    title="Bybit spot (v5)",
    streams=("publicTrade",),
    default_symbols=("BTC-USDT", "ETH-USDT"),
    gaps=(
        "no: spot trade ids come from one counter shared by all symbols, so they skip values "
        "and a lost trade cannot be seen; reconnects are the known risk"
    ),
    backfill=(
        "partial: after each reconnect, REST /v5/market/recent-trade (the last 60 spot trades, "
        "no paging) refetches what traded since the last trade seen; when the loss was longer, "
        "the Gap event says older trades are lost"
    ),
    endpoints=Endpoints("wss://stream.bybit.com/v5/public/spot", "https://api.bybit.com"),
)


def make_source(symbols: Sequence[str], options: ExchangeOptions) -> Source:
    from tickpipe.sources.bybit.source import BybitSource

    return BybitSource(symbols, url=INFO.url(options), rest_url=INFO.rest_url(options))


async def fetch_symbols(options: ExchangeOptions) -> dict[str, str]:
    """Every Bybit spot pair, normalized (`BTC-USDT`) -> Bybit's spelling (`BTCUSDT`), from
    `GET /v5/market/instruments-info?category=spot` (its `baseCoin` and `quoteCoin`)."""
    from tickpipe.sources.rest import RestClient, RestError

    base = INFO.rest_url(options)
    path = "/v5/market/instruments-info"
    out: dict[str, str] = {}
    cursor = ""
    async with RestClient(base) as client:
        for _ in range(100):  # pages; spot fits in one today
            params = {"category": "spot", "limit": 1000, "cursor": cursor or None}
            answer = await client.get_json(path, params)
            if not isinstance(answer, dict) or answer.get("retCode") != 0:
                raise RestError(f"{base}{path}", f"unexpected answer: {answer!r:.200}")
            result = answer.get("result") or {}
            for item in result.get("list") or []:
                if not isinstance(item, dict):
                    continue
                base_coin, quote_coin = item.get("baseCoin"), item.get("quoteCoin")
                raw = item.get("symbol")
                if isinstance(base_coin, str) and isinstance(quote_coin, str) and raw:
                    out[f"{base_coin.upper()}-{quote_coin.upper()}"] = str(raw)
            cursor = result.get("nextPageCursor") or ""
            if not cursor:
                break
    return out
