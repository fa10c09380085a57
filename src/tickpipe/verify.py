"""`tickpipe verify`: recompute every candle from the stored trades in one batch pass and diff.

This is the proof that streaming equals batch: whatever order, duplication or lateness the
trades arrived with, the candles the engine streamed must equal a plain grouping of the
de-duplicated trades by window. Any store answers it: the trades are read in bounded chunks
(`Store.trade_batches`), grouped by the engine's aggregation (`engine/batch.py`), and walked
side by side with the stored candles (`Store.stored_candles`), both ordered by key.
Prices, counts and sequence numbers must match exactly; sums of floats (volumes, VWAP, mean)
may differ in the last bits because they were added in another order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from tickpipe.engine.batch import recompute
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle
from tickpipe.stores.base import Store

EXACT = ("open", "high", "low", "close", "trades", "first_seq", "last_seq")
APPROX = ("volume", "quote_volume", "vwap", "mean_price", "buy_volume", "sell_volume")
FIELDS = (*EXACT, *APPROX)
REL_TOL = 1e-9


@dataclass
class Mismatch:
    exchange: str
    symbol: str
    interval: str
    start: int
    problem: str  # "missing", "extra", or the names of the fields that differ
    stored: dict = field(default_factory=dict)
    recomputed: dict = field(default_factory=dict)


@dataclass
class VerifyReport:
    trades: int
    duplicate_trades: int
    candles: int
    intervals: list[str]
    mismatches: list[Mismatch]
    mismatch_count: int

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0 and self.duplicate_trades == 0


def verify(store: Store, intervals: list[str] | None = None, show: int = 20) -> VerifyReport:
    """Diff the stored candles of every interval against the batch recomputation."""
    intervals = intervals or store.intervals()
    trades = int(store.totals()["stored_trades"])
    duplicates = store.duplicate_trades()
    candles = 0
    mismatches: list[Mismatch] = []
    count = 0
    for interval in intervals:
        recomputed = recompute(store.trade_batches(), parse_window(interval))
        for key, stored, again in _matched(store.stored_candles(interval), recomputed):
            candles += stored is not None
            problem = _problem(stored, again)
            if problem is None:
                continue
            count += 1
            if len(mismatches) < show:
                values = [_fields(c) for c in (stored, again)]
                mismatches.append(Mismatch(*key[:2], interval, key[2], problem, *values))
    return VerifyReport(trades, duplicates, candles, intervals, mismatches, count)


Matched = tuple[tuple[str, str, int], Candle | None, Candle | None]


def _matched(stored: Iterator[Candle], recomputed: Iterator[Candle]) -> Iterator[Matched]:
    """Both streams (each by exchange, symbol, start) walked side by side: each key once,
    with its candle from either side or None where that side has none."""
    a, b = next(stored, None), next(recomputed, None)
    while a is not None or b is not None:
        if a is not None and (b is None or _key(a) < _key(b)):
            yield _key(a), a, None
            a = next(stored, None)
        elif b is not None and (a is None or _key(b) < _key(a)):
            yield _key(b), None, b
            b = next(recomputed, None)
        elif a is not None and b is not None:
            yield _key(a), a, b
            a, b = next(stored, None), next(recomputed, None)


def _key(candle: Candle) -> tuple[str, str, int]:
    return (candle.exchange, candle.symbol, candle.start)


def _problem(stored: Candle | None, recomputed: Candle | None) -> str | None:
    if stored is None:
        return "missing: the trades make this candle but the store has none"
    if recomputed is None:
        return "extra: the store has this candle but no stored trade makes it"
    differ = [f for f in FIELDS if not _same(f, getattr(stored, f), getattr(recomputed, f))]
    return ", ".join(differ) or None


def _fields(candle: Candle | None) -> dict:
    return dict.fromkeys(FIELDS) if candle is None else {f: getattr(candle, f) for f in FIELDS}


def _same(name: str, a, b) -> bool:
    if a is None or b is None:
        return a is b
    if name in APPROX:
        return abs(a - b) <= REL_TOL * max(abs(b), 1e-12)
    return a == b
