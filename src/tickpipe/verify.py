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
    diffs = [_Diff(store.stored_candles(interval), interval, show) for interval in intervals]
    windows = [parse_window(interval) for interval in intervals]
    for completed in recompute(store.trade_batches(), windows):
        for diff, candles in zip(diffs, completed, strict=True):
            diff.recomputed(candles)
    mismatches: list[Mismatch] = []
    for diff in diffs:
        diff.finish()
        mismatches += diff.mismatches
    return VerifyReport(
        trades, duplicates, sum(d.stored_count for d in diffs), intervals, mismatches[:show],
        sum(d.count for d in diffs),
    )  # fmt: skip


class _Diff:
    """The stored candles of one interval walked side by side with the recomputed ones, as
    those arrive; both come by (exchange, symbol, start)."""

    def __init__(self, stored: Iterator[Candle], interval: str, show: int = 20) -> None:
        self.stored = stored
        self.interval = interval
        self.show = show
        self.next: Candle | None = next(stored, None)
        self.stored_count = 0
        self.count = 0
        self.mismatches: list[Mismatch] = []

    def recomputed(self, candles: list[Candle]) -> None:
        for candle in candles:
            key = _key(candle)
            while self.next is not None and _key(self.next) < key:
                self._take(None)
            if self.next is not None and _key(self.next) == key:
                self._take(candle)
            else:
                self._note(key, None, candle)

    def finish(self) -> None:
        while self.next is not None:
            self._take(None)

    def _take(self, recomputed: Candle | None) -> None:
        stored = self.next
        assert stored is not None
        self.stored_count += 1
        self._note(_key(stored), stored, recomputed)
        self.next = next(self.stored, None)

    def _note(self, key: _At, stored: Candle | None, recomputed: Candle | None) -> None:
        problem = _problem(stored, recomputed)
        if problem is None:
            return
        self.count += 1
        if len(self.mismatches) < self.show:
            values = [_fields(c) for c in (stored, recomputed)]
            self.mismatches.append(Mismatch(*key[:2], self.interval, key[2], problem, *values))


_At = tuple[str, str, int]  # (exchange, symbol, start) of a candle of one interval


def _key(candle: Candle) -> _At:
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
