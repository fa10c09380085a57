"""The API's analytics (top exchanges, top tickers, one exchange's breakdown), from candles.

A candle already holds what the analytics sum (trades, volume, quote volume, buy and sell
volume, low, high, open, close), so a period is answered from a few candles per instrument,
never by scanning its trades: the period is widened to whole candles of the finest stored
interval (`analytics_range`, which the API reports as the answer's start and end), then cut
into the fewest candles: the coarsest interval for the whole middle, finer ones for the edges
(`cover`). Over that range the answers equal what the stored trades give, because a candle is
the aggregate of its trades (streaming equals batch). Hopping windows overlap and are never
used.

Each store supplies one read, `candle_totals` (one interval, one range, summed per
instrument); this mixin does the rest, the same for every store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from tickpipe.engine.windows import parse_window

Piece = tuple[str, int, int]  # (interval, start, end): candles of `interval` in [start, end)
# The candle fields `totals_of` takes, in its order.
TOTALS_FIELDS = ("exchange", "symbol", "start", "open", "high", "low", "close", "volume",
                 "quote_volume", "trades", "buy_volume", "sell_volume")  # fmt: skip


class CandleTotals(msgspec.Struct, frozen=True):
    """One instrument's candles over a range, summed: the first open and last close by
    candle start, the extremes, and the sums."""

    exchange: str
    symbol: str
    first_start: int
    open: float
    last_start: int
    close: float
    low: float
    high: float
    volume: float
    quote_volume: float
    trades: int
    buy_volume: float
    sell_volume: float

    def merged(self, other: CandleTotals) -> CandleTotals:
        """Both ranges' totals as one (the ranges do not overlap)."""
        first = self if self.first_start <= other.first_start else other
        last = self if self.last_start >= other.last_start else other
        return CandleTotals(
            self.exchange, self.symbol, first.first_start, first.open, last.last_start,
            last.close, min(self.low, other.low), max(self.high, other.high),
            self.volume + other.volume, self.quote_volume + other.quote_volume,
            self.trades + other.trades, self.buy_volume + other.buy_volume,
            self.sell_volume + other.sell_volume,
        )  # fmt: skip


def totals_of(candles: Iterable[tuple[Any, ...]]) -> list[CandleTotals]:
    """Per instrument, the totals of candle rows (`TOTALS_FIELDS`): for stores that cannot
    sum on the server."""
    out: dict[tuple[str, str], CandleTotals] = {}
    for ex, sym, start, open_, high, low, close, vol, quote, trades, buy, sell in candles:
        one = CandleTotals(ex, sym, start, open_, start, close, low, high, vol, quote,
                           int(trades), buy, sell)  # fmt: skip
        key = (ex, sym)
        out[key] = one if key not in out else out[key].merged(one)
    return list(out.values())


def _chain(intervals: Iterable[str]) -> list[tuple[str, int]]:
    """The stored tumbling intervals (name, µs) that nest, finest first: each a whole
    multiple of the one before, so the edges of a coarser one are edges of the finer ones."""
    sizes: dict[int, str] = {}
    for name in intervals:
        try:
            window = parse_window(name)
        except ValueError:
            continue
        if not window.hopping:
            sizes[window.size] = name
    chain: list[tuple[str, int]] = []
    for size in sorted(sizes):
        if not chain or size % chain[-1][1] == 0:
            chain.append((sizes[size], size))
    return chain


def cover(start: int, end: int, intervals: Iterable[str]) -> tuple[int, int, list[Piece]]:
    """[start, end) widened to whole candles of the finest stored interval, and the pieces
    that cover it with the fewest candles."""
    chain = _chain(intervals)
    if not chain:
        return start, end, []
    finest = chain[0][1]
    lo, hi = start - start % finest, -(-end // finest) * finest
    pieces: list[Piece] = []

    def cut(a: int, b: int, level: int) -> None:
        """Pieces for [a, b) (whole candles of the finest interval) from `level` down."""
        name, size = chain[level]
        if level == 0:
            pieces.append((name, a, b))
            return
        inner_a, inner_b = -(-a // size) * size, b - b % size
        if inner_a >= inner_b:  # not one whole candle of this size: finer ones
            cut(a, b, level - 1)
            return
        if a < inner_a:
            cut(a, inner_a, level - 1)
        pieces.append((name, inner_a, inner_b))
        if inner_b < b:
            cut(inner_b, b, level - 1)

    if lo < hi:
        cut(lo, hi, len(chain) - 1)
    return lo, hi, pieces


def top_order(by: str) -> str:
    """The column the top lists rank by (`by`: trades or volume)."""
    if by not in ("trades", "volume"):
        raise ValueError(f"by={by!r}: use trades or volume")
    return "trades" if by == "trades" else "quote_volume"


class CandleAnalytics:
    """Mixin: the analytics over the store's `intervals` and `candle_totals`."""

    def intervals(self) -> list[str]:
        raise NotImplementedError

    def candle_totals(
        self, interval: str, start: int, end: int, exchange: str | None = None
    ) -> list[CandleTotals]:
        raise NotImplementedError

    def analytics_range(self, start: int, end: int) -> tuple[int, int]:
        lo, hi, _ = cover(start, end, self.intervals())
        return lo, hi

    def pieces_totals(self, pieces: list[Piece], exchange: str | None = None) -> list[CandleTotals]:
        """Per instrument, its candles over all `pieces` (which do not overlap), summed: one
        `candle_totals` per piece, merged here. A store that reads every piece in one request
        overrides this (MongoDB: FerretDB scans the whole collection for each request)."""
        out: dict[tuple[str, str], CandleTotals] = {}
        for interval, lo, hi in pieces:
            for one in self.candle_totals(interval, lo, hi, exchange):
                key = (one.exchange, one.symbol)
                out[key] = one if key not in out else out[key].merged(one)
        return list(out.values())

    def _instruments(self, start: int, end: int, exchange: str | None = None) -> list[CandleTotals]:
        """Each instrument's totals over `analytics_range(start, end)` (those that traded)."""
        pieces = cover(start, end, self.intervals())[2]
        return [t for t in self.pieces_totals(pieces, exchange) if t.trades]

    def top_exchanges(self, start: int, end: int, by: str, limit: int) -> list[dict[str, Any]]:
        order = top_order(by)
        rows: dict[str, dict[str, Any]] = {}
        for t in self._instruments(start, end):
            row = rows.setdefault(t.exchange, {"exchange": t.exchange, "trades": 0,
                                               "quote_volume": 0.0, "symbols": 0})  # fmt: skip
            row["trades"] += t.trades
            row["quote_volume"] += t.quote_volume
            row["symbols"] += 1
        return sorted(rows.values(), key=lambda r: (-r[order], r["exchange"]))[:limit]

    def top_tickers(self, start: int, end: int, by: str, limit: int) -> list[dict[str, Any]]:
        """Symbols across exchanges; the first and last price are the open of the symbol's
        first candle and the close of its last (exchanges with a candle of the same start:
        the first by name)."""
        order = top_order(by)
        groups: dict[str, list[CandleTotals]] = {}
        for t in self._instruments(start, end):
            groups.setdefault(t.symbol, []).append(t)
        rows: list[dict[str, Any]] = [
            {
                "symbol": symbol, "trades": sum(t.trades for t in group),
                "volume": sum(t.volume for t in group),
                "quote_volume": sum(t.quote_volume for t in group), "exchanges": len(group),
                "last_price": min(group, key=lambda t: (-t.last_start, t.exchange)).close,
                "first_price": min(group, key=lambda t: (t.first_start, t.exchange)).open,
            }
            for symbol, group in groups.items()
        ]  # fmt: skip
        return sorted(rows, key=lambda r: (-r[order], r["symbol"]))[:limit]

    def exchange_breakdown(
        self, exchange: str, start: int, end: int
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        found = self._instruments(start, end, exchange)
        n = sum(t.trades for t in found)
        quote = sum(t.quote_volume for t in found)
        totals = {"trades": n, "quote_volume": quote, "mean_trade_value": quote / n if n else None}
        tickers = [
            {
                "symbol": t.symbol, "trades": t.trades, "trade_share": t.trades / n,
                "open": t.open, "close": t.close, "volume": t.volume,
                "quote_volume": t.quote_volume,
                "volume_share": t.quote_volume / quote if quote else None,
                "vwap": t.quote_volume / t.volume if t.volume else None, "low": t.low,
                "high": t.high, "mean_size": t.volume / t.trades, "buy_volume": t.buy_volume,
                "sell_volume": t.sell_volume,
            }
            for t in found
        ]  # fmt: skip
        return totals, sorted(tickers, key=lambda r: (-r["trades"], r["symbol"]))
