"""`tickpipe verify`: recompute every candle from the stored trades in one batch pass and diff.

This is the proof that streaming equals batch: whatever order, duplication or lateness the
trades arrived with, the candles the engine streamed must equal a plain grouping of the
de-duplicated trades by window. Any store answers it: the trades are read in bounded chunks
(`Store.trade_batches`), grouped by the engine's aggregation (`engine/batch.py`), and walked
side by side with the stored candles (`Store.stored_candles`), both ordered by key.
`compare` is that walk over any such pair of streams: `tickpipe verify --lake` feeds it the
lake's files, one instrument at a time.
Prices, counts and sequence numbers must match exactly; sums of floats (volumes, VWAP, mean)
may differ in the last bits because they were added in another order.

One difference is not a mismatch: after an unclean stop (`kill -9`), the provisional candles of
the windows still open then lag the trades stored with them, and a restart rebuilds them. Such a
candle is "stale provisional": not final, no final candle of its instrument and interval comes
after it, and it holds a subset of the trades the recomputation counts. Any other difference,
a wrong final candle or a provisional one in a window a later final candle shows was closed,
is a mismatch.

`--since/--until` verify a range: the trades with ts in it are recomputed, and the candles
whose window lies wholly in it compared; a window the range cuts (it began before `since` or
ends after `until`) holds trades outside it, so it is counted as cut, not compared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from tickpipe.engine.batch import recompute
from tickpipe.engine.composite_settings import COMPOSITE
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, TradeBatch
from tickpipe.stores.base import Store, time_range

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
    stale_provisional: int = 0  # candles of windows open at an unclean stop: a restart rebuilds
    cut_windows: int = 0  # windows the --since/--until range cuts: not compared

    @property
    def ok(self) -> bool:
        return self.mismatch_count == 0 and self.duplicate_trades == 0


@dataclass
class Checked:
    """How far a verify has come, for a progress display (`expected_trades` is an estimate
    when a range is given: the store counts trades per instrument, not per range)."""

    instruments: int
    expected_trades: int
    trades: int = 0
    instruments_done: int = 0
    stage: str = "recomputing candles"
    _current: tuple[str, str] | None = None

    def add(self, batch: TradeBatch) -> None:
        """Count a batch (instruments in (exchange, symbol) order) as checked."""
        self.trades += len(batch)
        present = [batch.instruments[c] for c in np.unique(batch.instrument).tolist()]
        for key in sorted({(i.exchange, i.symbol) for i in present}):
            if key != self._current:
                self.instruments_done += self._current is not None
                self._current = key

    def finish(self) -> None:
        self.instruments_done += self._current is not None
        self._current = None


Progress = Callable[[Checked], None]


def verify(
    store: Store,
    intervals: list[str] | None = None,
    show: int = 20,
    since: int | None = None,
    until: int | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """Diff the stored candles of every interval against the batch recomputation of the
    trades with ts in [since, until); `progress` is called after each batch of trades."""
    intervals = intervals or store.intervals()
    checked = None if progress is None else expected(store, since, until)
    report = compare(
        store.trade_batches(since=since, until=until),
        lambda interval: store.stored_candles(interval, since=since, until=until),
        intervals, 0, show, since=since, until=until, checked=checked, progress=progress,
    )  # fmt: skip
    if progress is not None and checked is not None:
        checked.stage = "counting duplicate trades"
        progress(checked)
    report.duplicate_trades = store.duplicate_trades(since, until)
    return report


def expected(store: Store, since: int | None, until: int | None) -> Checked:
    """The instruments with trades in [since, until) and about how many trades they hold
    there (each instrument's trades taken as spread evenly between its first and last)."""
    lo, hi = time_range(since, until)
    instruments = trades = 0
    for _, _, count, first, last in store.instrument_summary():
        share = (min(hi, last + 1) - max(lo, first)) / (last + 1 - first)
        if share > 0:
            instruments += 1
            trades += round(count * share)
    return Checked(instruments, trades)


def compare(
    batches: Iterable[TradeBatch],
    stored: Callable[[str], Iterator[Candle]],
    intervals: list[str],
    duplicate_trades: int = 0,
    show: int = 20,
    open_after: Mapping[str, int] | None = None,
    since: int | None = None,
    until: int | None = None,
    checked: Checked | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """The candles `batches` make (every trade, each instrument's together in (ts, seq) order)
    walked beside `stored(interval)` (by (exchange, symbol), then start): whatever holds the
    history, a store or the lake, is verified by this one path.

    `open_after`: per interval, the newest start a copy of FINAL candles only holds (the
    lake); a recomputed candle after it was still open there, not missing. `since`, `until`:
    the range `batches` and `stored` hold; the windows it cuts are counted, not compared.
    `progress` gets `checked` after each batch.
    """
    span = time_range(since, until)
    diffs = [_Diff(stored(i), i, show, (open_after or {}).get(i), span) for i in intervals]
    windows = [parse_window(interval) for interval in intervals]
    checked = checked or Checked(0, 0)

    def counted() -> Iterator[TradeBatch]:
        for batch in batches:
            checked.add(batch)
            if progress is not None:
                progress(checked)
            yield batch
        checked.finish()
        if progress is not None:
            progress(checked)

    for completed in recompute(counted(), windows):
        for diff, candles in zip(diffs, completed, strict=True):
            diff.recomputed(candles)
    mismatches: list[Mismatch] = []
    for diff in diffs:
        diff.finish()
        mismatches += diff.mismatches
    return VerifyReport(
        checked.trades, duplicate_trades, sum(d.stored_count for d in diffs), intervals,
        mismatches[:show], sum(d.count for d in diffs), sum(d.stale for d in diffs),
        sum(len(d.cut) for d in diffs),
    )  # fmt: skip


class _Diff:
    """The stored candles of one interval walked side by side with the recomputed ones, as
    those arrive; both come by (exchange, symbol, start).

    A lagging provisional candle waits in `pending` until its instrument is behind us (then it
    is stale: its window was open at the stop) or a final candle of it comes (then its window
    was closed, and it is a mismatch). A window not wholly in `span` is only noted in `cut`."""

    def __init__(
        self,
        stored: Iterator[Candle],
        interval: str,
        show: int,
        open_after: int | None,
        span: tuple[int, int],
    ) -> None:
        self.size = parse_window(interval).size
        self.span = span
        self.cut: set[_At] = set()  # at most two windows per instrument: the range's edges
        # Composite candles are made from venues' candles, not from trades: not recomputed here.
        self.stored = (c for c in stored if c.exchange != COMPOSITE and self._inside(c))
        self.interval = interval
        self.show = show
        self.open_after = open_after
        self.next: Candle | None = next(self.stored, None)
        self.last: _At | None = None  # the key of the stored candle taken last
        self.stored_count = 0
        self.count = 0
        self.stale = 0
        self.mismatches: list[Mismatch] = []
        self.pending: list[Mismatch] = []  # the first `show` of them
        self.pending_count = 0
        self.pending_of: tuple[str, str] | None = None  # their (exchange, symbol)

    def _inside(self, candle: Candle) -> bool:
        """Whether `candle`'s window lies wholly in the span (else it is noted as cut)."""
        lo, hi = self.span
        if lo <= candle.start and candle.start + self.size <= hi:
            return True
        self.cut.add(_key(candle))
        return False

    def recomputed(self, candles: list[Candle]) -> None:
        for candle in candles:
            if not self._inside(candle):
                continue
            key = _key(candle)
            while self.next is not None and _key(self.next) < key:
                self._take(None)
            self._reach(key[:2])
            if self.next is not None and _key(self.next) == key:
                self._take(candle)
                while self.next is not None and _key(self.next) == key:
                    self._take(candle)  # the same key stored again: noted as a duplicate
            elif self.open_after is None or candle.start <= self.open_after:
                self._note(key, None, candle)

    def finish(self) -> None:
        while self.next is not None:
            self._take(None)
        self._reach(None)

    def _reach(self, instrument: tuple[str, str] | None, final: bool = False) -> None:
        """Settle the pending candles on reaching `instrument` (None: the end), where a stored
        `final` candle means their windows were closed."""
        if self.pending_of is None or (instrument == self.pending_of and not final):
            return
        if instrument == self.pending_of:
            self.count += self.pending_count
            self.mismatches += self.pending[: self.show - len(self.mismatches)]
        else:
            self.stale += self.pending_count
        self.pending, self.pending_count, self.pending_of = [], 0, None

    def _take(self, recomputed: Candle | None) -> None:
        stored = self.next
        assert stored is not None
        self.stored_count += 1
        key = _key(stored)
        self._reach(key[:2], stored.final)
        twice = key == self.last
        self.last = key
        self._note(key, stored, recomputed, twice)
        self.next = next(self.stored, None)

    def _note(
        self, key: _At, stored: Candle | None, recomputed: Candle | None, twice: bool = False
    ) -> None:
        problem = _TWICE if twice else _problem(stored, recomputed)
        if problem is None:
            return
        stale = not twice and _lags(stored, recomputed)
        shown = self.pending if stale else self.mismatches
        if stale:
            self.pending_count += 1
            self.pending_of = key[:2]
        else:
            self.count += 1
        if len(shown) < self.show:
            values = [_fields(c) for c in (stored, recomputed)]
            shown.append(Mismatch(*key[:2], self.interval, key[2], problem, *values))


_TWICE = "duplicate: this candle is stored twice"
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


def _lags(stored: Candle | None, recomputed: Candle | None) -> bool:
    """`stored` is a provisional candle of a subset of the trades that make `recomputed`."""
    if stored is None or recomputed is None or stored.final:
        return False
    return (
        stored.trades < recomputed.trades
        and recomputed.low <= stored.low <= stored.high <= recomputed.high
        and stored.volume <= recomputed.volume * (1 + REL_TOL)
    )


def _fields(candle: Candle | None) -> dict:
    return dict.fromkeys(FIELDS) if candle is None else {f: getattr(candle, f) for f in FIELDS}


def _same(name: str, a, b) -> bool:
    if a is None or b is None:
        return a is b
    if name in APPROX:
        return abs(a - b) <= REL_TOL * max(abs(b), 1e-12)
    return a == b
