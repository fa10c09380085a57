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
    """Accepted trades of a batch in (instrument, ts, seq) order, with derived columns.

    `sums` holds, one row each, what a candle adds up per trade (size, price * size, price,
    the buy size, the sell size: `SUM_ROWS`), so every window sums them in one `reduceat`.
    """

    gid: np.ndarray
    ts: np.ndarray
    recv_ts: np.ndarray
    seq: np.ndarray
    price: np.ndarray
    sums: np.ndarray  # float64, shape (len(SUM_ROWS), trades)

    @property
    def size(self) -> np.ndarray:
        return self.sums[0]

    @classmethod
    def of(cls, gid: np.ndarray, batch: TradeBatch) -> SortedTrades:
        """`batch`, already in `sort_order`; `gid` is the engine's instrument id per trade."""
        price, size, side = batch.price, batch.size, batch.side
        sums = np.empty((len(SUM_ROWS), len(price)), np.float64)
        sums[0] = size
        np.multiply(price, size, out=sums[1])
        sums[2] = price
        np.copyto(sums[3], np.where(side == SIDE_BUY, size, 0.0))
        np.copyto(sums[4], np.where(side == SIDE_SELL, size, 0.0))
        return cls(gid=gid, ts=batch.ts, recv_ts=batch.recv_ts, seq=batch.seq, price=price,
                   sums=sums)  # fmt: skip


# The candle fields that are sums of a per-trade value, in the row order of `sums`.
SUM_ROWS = ("volume", "quote_volume", "price_sum", "buy_volume", "sell_volume")


def sort_order(gid: np.ndarray, ts: np.ndarray, seq: np.ndarray) -> np.ndarray:
    """Indices that order trades by (instrument, ts, seq).

    Feeds mostly deliver each symbol's trades in order, so one stable sort on a key packing
    instrument and time usually leaves equal times already in seq order; the full three-key
    sort runs only when it does not.
    """
    if len(ts) < 2:
        return np.zeros(len(ts), np.int64)
    t0 = int(ts.min())
    if int(ts.max()) - t0 < (1 << 40) and int(gid.max()) < (1 << 23):
        key = (gid.astype(np.int64) << 40) | (ts - t0)
        order = np.argsort(key, kind="stable")
        k, s = key[order], seq[order]
        if not np.any((k[1:] == k[:-1]) & (s[1:] < s[:-1])):
            return order
    return np.lexsort((seq, ts, gid))


@dataclass(slots=True)
class Partials:
    """Partial candles as parallel arrays, one element per (instrument, start); the sums
    (`SUM_ROWS`) as the rows of one array."""

    gid: np.ndarray
    start: np.ndarray
    open: np.ndarray
    open_ts: np.ndarray
    open_seq: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    close_ts: np.ndarray
    close_seq: np.ndarray
    trades: np.ndarray
    sums: np.ndarray  # float64, shape (len(SUM_ROWS), partials)

    def __len__(self) -> int:
        return len(self.gid)


def partials(trades: SortedTrades, slide: int) -> Partials:
    """One partial candle per (instrument, slide-aligned start) present in the batch."""
    n = len(trades.ts)
    start = trades.ts - trades.ts % slide
    if n == 1:  # a live feed's single trade: the trade is its own partial candle
        price, one = trades.price, np.ones(1, np.int64)
        return Partials(
            gid=trades.gid, start=start, open=price, open_ts=trades.ts, open_seq=trades.seq,
            high=price, low=price, close=price, close_ts=trades.ts, close_seq=trades.seq,
            trades=one, sums=trades.sums,
        )  # fmt: skip
    change = np.empty(n, bool)
    change[0] = True
    np.not_equal(trades.gid[1:], trades.gid[:-1], out=change[1:])
    change[1:] |= start[1:] != start[:-1]
    first = change.nonzero()[0]
    last = np.empty_like(first)
    last[:-1] = first[1:] - 1
    last[-1] = n - 1
    return Partials(
        gid=trades.gid[first],
        start=start[first],
        open=trades.price[first],
        open_ts=trades.ts[first],
        open_seq=trades.seq[first],
        high=np.maximum.reduceat(trades.price, first),
        low=np.minimum.reduceat(trades.price, first),
        close=trades.price[last],
        close_ts=trades.ts[last],
        close_seq=trades.seq[last],
        trades=last - first + 1,
        sums=np.add.reduceat(trades.sums, first, axis=1),
    )
