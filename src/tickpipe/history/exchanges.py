"""Each exchange's trade history for a symbol and a time range, one page at a time, on the
connectors' own REST calls (`sources/<exchange>/rest.py`, `backfill.py`).

A `History` fetches the page after a cursor and says where the next one starts; the cursor is
a short string the resume file keeps, so a killed backfill asks for the same page again. Every
page's trades are those of [since_us, until_us) only, as the live feed would have given them
(same instrument, trade ids and order keys), so the store's de-duplication recognises trades
the live pipeline stored already.

- Binance: `/api/v3/aggTrades` by `startTime` finds the first id of the range (an hour's
  search per request, Binance's limit), then `/api/v3/historicalTrades` (the `trade` stream) or
  `/api/v3/aggTrades` (`aggTrade`) page forward by `fromId`, 1000 a page.
- Kraken: `/0/public/Trades` pages forward by its nanosecond `since` cursor.
- OKX: `/api/v5/market/history-trades` pages backward, by time to the end of the range first
  (`type=2`), then by trade id, 100 a page (OKX keeps three months).
- Coinbase: `/products/{id}/trades` pages backward from the newest trade by its `after`
  cursor (older than a trade id), 1000 a page; it has no search by time, so a range far back
  costs a page per 1000 trades since.
- ccxt (the exchange its stream names): the unified `fetch_trades(symbol, since)` pages
  forward by time from the newest trade's timestamp; an empty answer moves on by an hour
  (Binance, for one, answers `since` with one hour of trades).
- Bitstamp: `/api/v2/transactions/{pair}/` has no paging, only the last minute, hour or day,
  with times to the second: one request serves a range inside the last day; an older range
  is refused in one line.

Exchanges in `NO_HISTORY` have no public REST history of trades to page through; the reason is
the one line `tickpipe backfill` prints for them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import msgspec
import numpy as np

from tickpipe.records import Instrument, TradeBatch
from tickpipe.sources.binance.parse import InstrumentIndex as BinanceIndex
from tickpipe.sources.binance.rest import (
    AGG_TRADES,
    HISTORICAL_TRADES,
    fetch_page,
    first_id_at,
    rows_to_batch,
)
from tickpipe.sources.bitstamp.backfill import fetch_since as bitstamp_since
from tickpipe.sources.bitstamp.backfill import to_batch as bitstamp_batch
from tickpipe.sources.bitstamp.parse import InstrumentIndex as BitstampIndex
from tickpipe.sources.coinbase.parse import InstrumentIndex as CoinbaseIndex
from tickpipe.sources.coinbase.parse import micros, rest_batch, rest_trades
from tickpipe.sources.coinbase.source import REST_PAGE_LIMIT as COINBASE_PAGE
from tickpipe.sources.kraken.backfill import TRADES_PATH
from tickpipe.sources.kraken.parse import InstrumentIndex as KrakenIndex
from tickpipe.sources.kraken.parse import parse_rest_trades, to_kraken_rest
from tickpipe.sources.okx.backfill import OkxApiError, fetch_older
from tickpipe.sources.okx.backfill import to_batch as okx_batch
from tickpipe.sources.okx.parse import InstrumentIndex as OkxIndex
from tickpipe.sources.parsing import trade_batch
from tickpipe.sources.rest import RestClient

HOUR_MS = 3_600_000

NO_HISTORY = {
    "bybit": "Bybit's public REST API gives only the last 60 spot trades (recent-trade), no "
    "history to page through",
    "finnhub": "Finnhub's REST API has no tick-level trade history for crypto (candles only)",
    "tiingo": "Tiingo's REST API has no tick-level trade history for crypto",
}


class HistoryError(RuntimeError):
    """The exchange answered something a backfill cannot go on from (one line)."""


class Page(NamedTuple):
    batch: TradeBatch  # this page's trades in [since_us, until_us)
    cursor: str  # where the next page starts
    done: bool  # the range is complete
    reached_us: int  # how far into the range this page got (for the progress bar)


class History(Protocol):
    """An exchange's paged trade history of one instrument."""

    instrument: Instrument

    async def page(self, rest: RestClient, since_us: int, until_us: int, cursor: str) -> Page: ...


def _inside(batch: TradeBatch, since_us: int, until_us: int) -> TradeBatch:
    return batch.take(np.flatnonzero((batch.ts >= since_us) & (batch.ts < until_us)))


class BinanceHistory:
    """Binance: find the range's first id by time, then page forward by id. Cursors:
    `t<ms>` (still searching from that time), `i<id>` (the next id to fetch)."""

    def __init__(self, symbol: str, stream: str = "trade") -> None:
        self.index = BinanceIndex.for_symbols([symbol])
        self.instrument = self.index.instruments[0]
        self.path = AGG_TRADES if stream == "aggTrade" else HISTORICAL_TRADES

    async def page(self, rest: RestClient, since_us: int, until_us: int, cursor: str) -> Page:
        raw = self.instrument.raw_symbol
        empty = TradeBatch.empty(self.instrument.exchange)
        if not cursor or cursor.startswith("t"):
            start_ms = int(cursor[1:]) if cursor else _ceil_div(since_us, 1000)
            last_ms = _ceil_div(until_us, 1000) - 1
            if start_ms > last_ms:
                return Page(empty, cursor, True, until_us)
            end_ms = min(start_ms + HOUR_MS - 1, last_ms)
            first = await first_id_at(rest, self.path, raw, start_ms, end_ms)
            if first is None:
                return Page(empty, f"t{end_ms + 1}", end_ms >= last_ms, end_ms * 1000)
            cursor = f"i{first}"
        page = await fetch_page(rest, self.path, raw, int(cursor[1:]))
        if not page.rows:
            return Page(empty, cursor, True, until_us)
        batch = rows_to_batch(page.rows, 0, self.index, "binance", time.time_ns() // 1000)
        done = page.rows[-1].time_ms * 1000 >= until_us
        reached = min(page.rows[-1].time_ms * 1000, until_us)
        return Page(_inside(batch, since_us, until_us), f"i{page.rows[-1].id + 1}", done, reached)


class KrakenHistory:
    """Kraken: `since` (ns) pages forward. Cursor: the `since` of the next page."""

    def __init__(self, symbol: str, page_size: int = 1000) -> None:
        self.index = KrakenIndex.for_symbols([symbol])
        self.instrument = self.index.instruments[0]
        self.page_size = page_size

    async def page(self, rest: RestClient, since_us: int, until_us: int, cursor: str) -> Page:
        since_ns = int(cursor) if cursor else max(since_us * 1000 - 1, 0)
        pair = to_kraken_rest(self.instrument.symbol)
        answer = await rest.get_json(
            TRADES_PATH, {"pair": pair, "since": since_ns, "count": self.page_size}
        )
        try:
            page = parse_rest_trades(answer)
        except ValueError as exc:
            raise HistoryError(f"kraken: unreadable Trades answer: {exc}") from None
        if page.error:
            raise HistoryError(f"kraken answered: {page.error}")
        rows = page.trades
        empty = TradeBatch.empty(self.instrument.exchange)
        if not rows or page.last is None or page.last <= since_ns:
            return Page(empty, str(since_ns), True, until_us)
        ids, prices, sizes, sides, ts = zip(*rows, strict=True)
        side = np.fromiter(sides, np.int8, len(rows))
        now = time.time_ns() // 1000
        batch = trade_batch("kraken", self.index.instruments, 0, ids, prices, sizes, side, ts, now)
        newest = max(ts)
        return Page(
            _inside(batch, since_us, until_us), str(page.last), newest >= until_us,
            min(newest, until_us),
        )  # fmt: skip


class OkxHistory:
    """OKX: pages backward from the end of the range. Cursors: `t<ms>` (trades older than
    that time), `i<id>` (older than that trade id)."""

    def __init__(self, symbol: str) -> None:
        self.index = OkxIndex.for_symbols([symbol])
        self.instrument = self.index.instruments[0]

    async def page(self, rest: RestClient, since_us: int, until_us: int, cursor: str) -> Page:
        inst_id = self.instrument.raw_symbol
        try:
            if not cursor or cursor.startswith("t"):
                than_ms = int(cursor[1:]) if cursor else _ceil_div(until_us, 1000)
                trades, _ = await fetch_older(rest, inst_id, than_ms=than_ms)
            else:
                trades, _ = await fetch_older(rest, inst_id, than_id=int(cursor[1:]))
        except OkxApiError as exc:
            raise HistoryError(f"okx: {exc}") from None
        empty = TradeBatch.empty(self.instrument.exchange)
        if not trades:
            return Page(empty, cursor, True, until_us)
        oldest = min(trades, key=lambda t: t.tradeId)
        batch = okx_batch(trades, self.index, "okx")
        done = oldest.ts * 1000 < since_us
        reached = until_us - max(oldest.ts * 1000, since_us) + since_us  # walking backward
        return Page(_inside(batch, since_us, until_us), f"i{oldest.tradeId}", done, reached)


class CoinbaseHistory:
    """Coinbase: pages backward from the newest trade. Cursor: `i<id>` (older than it)."""

    def __init__(self, symbol: str) -> None:
        self.index = CoinbaseIndex.for_symbols([symbol])
        self.instrument = self.index.instruments[0]

    async def page(self, rest: RestClient, since_us: int, until_us: int, cursor: str) -> Page:
        params: dict[str, int] = {"limit": COINBASE_PAGE}
        if cursor:
            params["after"] = int(cursor[1:])
        answer = await rest.get_json(f"/products/{self.instrument.raw_symbol}/trades", params)
        try:
            trades = rest_trades(answer)
        except msgspec.ValidationError as exc:
            raise HistoryError(f"coinbase: unreadable trade page: {exc}") from None
        empty = TradeBatch.empty(self.instrument.exchange)
        if not trades:
            return Page(empty, cursor, True, until_us)
        oldest = min(trades, key=lambda t: t.trade_id)
        if cursor and oldest.trade_id >= int(cursor[1:]):
            raise HistoryError("coinbase: the trade page did not move back in time")
        trades.sort(key=lambda t: t.trade_id)
        batch = rest_batch(trades, 0, time.time_ns() // 1000, self.index, "coinbase")
        oldest_us = micros(oldest.time)
        reached = until_us - max(min(oldest_us, until_us), since_us) + since_us
        return Page(
            _inside(batch, since_us, until_us), f"i{oldest.trade_id}", oldest_us < since_us,
            reached,
        )  # fmt: skip


class BitstampHistory:
    """Bitstamp: one request for the smallest window (minute, hour, day) that reaches back to
    the range's start; none reaches further than a day."""

    def __init__(self, symbol: str) -> None:
        self.index = BitstampIndex.for_symbols([symbol])
        self.instrument = self.index.instruments[0]

    async def page(self, rest: RestClient, since_us: int, until_us: int, cursor: str) -> Page:
        trades, _, complete = await bitstamp_since(
            rest, self.instrument.raw_symbol, -1, since_us / 1_000_000
        )
        if not complete:
            raise HistoryError(
                "bitstamp: its REST transactions reach back one day only (no paging); "
                "give a --since within the last day"
            )
        batch = bitstamp_batch(sorted(trades, key=lambda t: t.tid), 0, self.index, "bitstamp")
        return Page(_inside(batch, since_us, until_us), "", True, until_us)


class CcxtHistory:
    """Any ccxt exchange: `fetch_trades` by time. Cursor: the `since` (ms) of the next page."""

    def __init__(self, exchange_id: str, symbol: str, config: Mapping[str, Any] | None = None):
        from tickpipe.sources.ccxt.source import TradeConverter

        self.exchange_id = exchange_id
        self.config = dict(config or {})
        self.converter = TradeConverter(exchange_id, [symbol], "ccxt")
        self.instrument = self.converter.instruments[0]
        self._exchange: Any = None

    async def page(self, rest: RestClient, since_us: int, until_us: int, cursor: str) -> Page:
        from tickpipe.sources.ccxt.source import create_exchange

        if self._exchange is None:
            self._exchange = create_exchange(self.exchange_id, self.config)
        since_ms = int(cursor) if cursor else since_us // 1000
        until_ms = _ceil_div(until_us, 1000)
        empty = TradeBatch.empty("ccxt")
        if since_ms >= until_ms:
            return Page(empty, cursor, True, until_us)
        try:
            page = await self._exchange.fetch_trades(self.converter.unified[0], since_ms, 1000)
        except Exception as exc:  # ccxt's own errors: one line, the backfill reports it
            raise HistoryError(f"ccxt {self.exchange_id}: {type(exc).__name__}: {exc}") from None
        stamps = [t["timestamp"] for t in page if isinstance(t, Mapping) and t.get("timestamp")]
        if not stamps:
            step = since_ms + HOUR_MS
            return Page(empty, str(step), step >= until_ms, min(step * 1000, until_us))
        newest = max(stamps)
        batch = self.converter.convert(page, time.time_ns() // 1000).batch
        nxt = newest if newest > since_ms else since_ms + 1  # trades of `newest` come again
        return Page(
            _inside(batch, since_us, until_us), str(nxt), newest >= until_ms,
            min(newest * 1000, until_us),
        )  # fmt: skip

    async def aclose(self) -> None:
        if self._exchange is not None:
            await self._exchange.close()
            self._exchange = None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def history_of(
    exchange: str,
    symbol: str,
    stream: str | None = None,
    ccxt_config: Mapping[str, Any] | None = None,
) -> History:
    """The paged history of `symbol` on `exchange` (`stream`: its feed variant, for ccxt the
    exchange); a HistoryError (one line) when the exchange has none."""
    if exchange == "ccxt":
        import importlib.util

        if importlib.util.find_spec("ccxt") is None:
            raise HistoryError("ccxt: needs the ccxt extra: pip install 'tickpipe[ccxt]'")
        return CcxtHistory(stream or "kucoin", symbol, ccxt_config)
    if exchange == "binance":
        if stream == "ticker":
            raise HistoryError("binance: the ticker stream stores price samples, not trades; "
                               "backfill a store of the trade or aggTrade stream")  # fmt: skip
        return BinanceHistory(symbol, stream or "trade")
    if exchange == "kraken":
        return KrakenHistory(symbol)
    if exchange == "okx":
        if stream == "trades":
            raise HistoryError("okx: the trades stream stores a row per taker order (several "
                               "trade ids), REST history single trades; backfill a store of "
                               "the trades-all stream")  # fmt: skip
        return OkxHistory(symbol)
    if exchange == "coinbase":
        return CoinbaseHistory(symbol)
    if exchange == "bitstamp":
        return BitstampHistory(symbol)
    raise HistoryError(f"{exchange}: {NO_HISTORY.get(exchange, 'no REST trade history known')}")
