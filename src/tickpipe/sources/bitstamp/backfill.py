"""Refetching Bitstamp trades missed during a disconnect (`GET /api/v2/transactions/{pair}/`).

The endpoint has no paging: it returns every trade of the last minute, hour or day
(`time=minute|hour|day`), newest first, as `{"date" (s), "tid", "price", "amount", "type"}`.
Bitstamp trade ids grow across all pairs, so per pair they increase but skip: the trades newer
than the last id seen are exactly the missed ones, but a hole cannot be told from the ids, and a
disconnect longer than a day loses what is older than the day.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, TradeBatch
from tickpipe.sources.bitstamp.parse import InstrumentIndex
from tickpipe.sources.rest import RestClient

WINDOWS = (("minute", 60), ("hour", 3600), ("day", 86400))
_Positive = Annotated[float, msgspec.Meta(gt=0)]


class Transaction(msgspec.Struct, gc=False):
    date: Annotated[int, msgspec.Meta(ge=0, le=2**62 // 1_000_000)]  # seconds
    tid: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
    price: _Positive
    amount: _Positive
    type: Literal[0, 1]  # the taker's side: 0 buy, 1 sell


def window(seconds: float) -> tuple[str, bool]:
    """The smallest `time` window that reaches `seconds` back, and whether one does at all."""
    for name, length in WINDOWS:
        if seconds < length - 5:  # a few seconds of margin for clock skew and latency
            return name, True
    return "day", False


async def fetch_since(
    client: RestClient, url_symbol: str, after_id: int, since: float
) -> tuple[list[Transaction], list[Any], bool]:
    """Trades of `url_symbol` with an id above `after_id`, looking back to `since` (Unix s);
    also the rows that could not be read and whether the window reached back far enough."""
    name, complete = window(time.time() - since)
    rows = await client.get_json(f"/api/v2/transactions/{url_symbol}/", {"time": name})
    if not isinstance(rows, list):
        raise RuntimeError(f"bitstamp transactions: unexpected answer {str(rows)[:200]}")
    trades: list[Transaction] = []
    bad: list[Any] = []
    for row in rows:
        try:
            trades.append(msgspec.convert(row, Transaction, strict=False))
        except msgspec.ValidationError:
            bad.append(row)
    return [t for t in trades if t.tid > after_id], bad, complete


def to_batch(
    trades: list[Transaction], code: int, index: InstrumentIndex, source: str
) -> TradeBatch:
    """REST trades of one instrument as a batch (times only to the second, as REST gives them)."""
    n = len(trades)
    sell = np.fromiter([t.type for t in trades], np.int8, n)
    return TradeBatch(
        source=source,
        instruments=index.instruments,
        instrument=np.full(n, code, np.int32),
        seq=np.fromiter([t.tid for t in trades], np.int64, n),
        price=np.fromiter([t.price for t in trades], np.float64, n),
        size=np.fromiter([t.amount for t in trades], np.float64, n),
        side=np.where(sell == 1, np.int8(SIDE_SELL), np.int8(SIDE_BUY)),
        ts=np.fromiter([t.date for t in trades], np.int64, n) * 1_000_000,
        recv_ts=np.full(n, time.time_ns() // 1000, np.int64),
    )
