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

from tickpipe.records import TradeBatch
from tickpipe.sources.bitstamp.parse import InstrumentIndex, taker_side
from tickpipe.sources.parsing import trade_batch
from tickpipe.sources.rest import RestClient, read_rows

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
    trades, bad = read_rows(rows, Transaction)
    return [t for t in trades if t.tid > after_id], bad, complete


def to_batch(
    trades: list[Transaction], code: int, index: InstrumentIndex, source: str
) -> TradeBatch:
    """REST trades of one instrument as a batch (times only to the second, as REST gives them)."""
    side = taker_side([t.type for t in trades])
    ids, prices = [t.tid for t in trades], [t.price for t in trades]
    sizes, ts = [t.amount for t in trades], [t.date * 1_000_000 for t in trades]
    now = time.time_ns() // 1000
    return trade_batch(source, index.instruments, code, ids, prices, sizes, side, ts, now)
