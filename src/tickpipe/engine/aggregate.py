"""Column-wise candle aggregation of one batch: one partial candle per (instrument, window).

The batch is sorted once by (instrument, ts, seq); then every window's groups are contiguous
runs, and each candle field is one `ufunc.reduceat` over the whole batch. Open and close are
the first and last trade of a run, which is exactly the (ts, seq) order the semantics ask for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, TradeBatch


@dataclass(slots=True)
class SortedTrades:
    """Accepted trades of a batch in (instrument, ts, seq) order, with derived columns."""

    gid: np.ndarray
    ts: np.ndarray
    recv_ts: np.ndarray
    seq: np.ndarray
    price: np.ndarray
    size: np.ndarray
    quote: np.ndarray
    buy: np.ndarray
    sell: np.ndarray

    @classmethod
    def build(cls, gid: np.ndarray, batch: TradeBatch) -> SortedTrades:
        """`gid` is the engine's instrument id of each trade of `batch`."""
        order = np.lexsort((batch.seq, batch.ts, gid))
        price = batch.price[order]
        size = batch.size[order]
        side = batch.side[order]
        return cls(
            gid=gid[order],
            ts=batch.ts[order],
            recv_ts=batch.recv_ts[order],
            seq=batch.seq[order],
            price=price,
            size=size,
            quote=price * size,
            buy=np.where(side == SIDE_BUY, size, 0.0),
            sell=np.where(side == SIDE_SELL, size, 0.0),
        )


@dataclass(slots=True)
class Partials:
    """Partial candles as parallel lists (Python lists: the merge into state is a Python loop)."""

    gid: list[int]
    start: list[int]
    open: list[float]
    open_ts: list[int]
    open_seq: list[int]
    high: list[float]
    low: list[float]
    close: list[float]
    close_ts: list[int]
    close_seq: list[int]
    volume: list[float]
    quote_volume: list[float]
    price_sum: list[float]
    trades: list[int]
    buy_volume: list[float]
    sell_volume: list[float]

    def rows(self):
        """Tuples in field order, one per partial candle."""
        return zip(
            self.gid, self.start, self.open, self.open_ts, self.open_seq, self.high, self.low,
            self.close, self.close_ts, self.close_seq, self.volume, self.quote_volume,
            self.price_sum, self.trades, self.buy_volume, self.sell_volume, strict=True,
        )  # fmt: skip


def partials(trades: SortedTrades, slide: int) -> Partials:
    """One partial candle per (instrument, slide-aligned start) present in the batch."""
    n = len(trades.ts)
    start = trades.ts - trades.ts % slide
    change = np.empty(n, bool)
    change[0] = True
    np.not_equal(trades.gid[1:], trades.gid[:-1], out=change[1:])
    change[1:] |= start[1:] != start[:-1]
    first = np.flatnonzero(change)
    last = np.append(first[1:], n) - 1
    return Partials(
        gid=trades.gid[first].tolist(),
        start=start[first].tolist(),
        open=trades.price[first].tolist(),
        open_ts=trades.ts[first].tolist(),
        open_seq=trades.seq[first].tolist(),
        high=np.maximum.reduceat(trades.price, first).tolist(),
        low=np.minimum.reduceat(trades.price, first).tolist(),
        close=trades.price[last].tolist(),
        close_ts=trades.ts[last].tolist(),
        close_seq=trades.seq[last].tolist(),
        volume=np.add.reduceat(trades.size, first).tolist(),
        quote_volume=np.add.reduceat(trades.quote, first).tolist(),
        price_sum=np.add.reduceat(trades.price, first).tolist(),
        trades=(last - first + 1).tolist(),
        buy_volume=np.add.reduceat(trades.buy, first).tolist(),
        sell_volume=np.add.reduceat(trades.sell, first).tolist(),
    )
