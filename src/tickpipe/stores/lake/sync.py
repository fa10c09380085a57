"""Copying from a primary store into the lake (start-up catch-up, `tickpipe export`) and
reading the lake back for `tickpipe verify --lake`.

Both copies write only what the lake lacks, compared by key over the copied range, so they
may run over a range the lake holds already (see the package docstring).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, TradeBatch
from tickpipe.stores.base import Store, time_range
from tickpipe.stores.lake.layout import CANDLES, DAY_US, SCHEMAS, SORT_KEYS, TRADES, Lake, day_of
from tickpipe.verify import Checked, Progress, VerifyReport, compare

FOREVER_US = 2**62
ProgressLine = Callable[[str], None]  # copy and catch-up report a line per instrument


@dataclass
class CopyReport:
    instruments: int = 0
    trades: int = 0  # written to the lake (the rest it held already)
    candles: int = 0


def copy_to_lake(
    store: Store,
    lake: Lake,
    since: dict[tuple[str, str], int] | int = -FOREVER_US,
    until: int = FOREVER_US,
    progress: ProgressLine | None = None,
    rows: int = 100_000,
    instruments: Collection[tuple[str, str]] | None = None,
) -> CopyReport:
    """Write the store's trades with `ts` in [since, until) and its final candles starting in
    the same range (less the largest window, whose candles began before their trades) that the
    lake lacks. `since` may be given per (exchange, symbol); `instruments` limits the copy to
    those (exchange, symbol). Streams in batches of `rows`."""
    report = CopyReport()
    intervals = store.intervals()
    widest = max((parse_window(i).size for i in intervals), default=0)
    summary = [
        row for row in store.instrument_summary() if instruments is None or row[:2] in instruments
    ]
    for n, (exchange, symbol, _count, first_ts, last_ts) in enumerate(summary, 1):
        lo = since.get((exchange, symbol), first_ts) if isinstance(since, dict) else since
        lo = max(lo, first_ts)
        if lo >= until:
            continue
        trades = _copy_trades(store, lake, exchange, symbol, lo, until, rows)
        candles = 0
        end = min(until, last_ts + 1)  # no candle starts after the newest trade
        for interval in intervals:
            candles += _copy_candles(store, lake, exchange, symbol, interval, lo - widest, end)
        lake.flush()
        report.instruments += 1
        report.trades += trades
        report.candles += candles
        if progress is not None:
            progress(f"{n}/{len(summary)} {exchange} {symbol}: {trades:,} trades, "
                     f"{candles:,} final candles written")  # fmt: skip
    return report


def _copy_trades(
    store: Store, lake: Lake, exchange: str, symbol: str, lo: int, until: int, rows: int
) -> int:
    """The store's trades in ts order; a UTC day's keys in the lake read (and its files
    written) at a time, so memory holds about one day of one instrument."""
    written = 0
    day = None
    have: set = set()
    for batch in store.restore_batches({(exchange, symbol): lo}, rows):
        for part in _by_day(batch.take(batch.ts < until)):
            if int(part.ts[0]) // DAY_US != day:
                lake.flush()  # the previous day's files
                day = int(part.ts[0]) // DAY_US
                have = lake.keys(TRADES, exchange, symbol, max(lo, day * DAY_US),
                                 min(until, (day + 1) * DAY_US))  # fmt: skip
            if have:
                ids = part.trade_ids()
                part = part.take(np.fromiter((i not in have for i in ids), bool, len(ids)))
            lake.add_trades(part)
            written += len(part)
        if len(batch) and batch.ts[-1] >= until:
            break  # ordered by ts: the rest is later still
    return written


def _by_day(batch: TradeBatch) -> list[TradeBatch]:
    """A batch ordered by ts, split where the UTC day changes."""
    if not len(batch):
        return []
    days = batch.ts // DAY_US
    cuts = np.flatnonzero(np.diff(days)) + 1
    bounds = [0, *cuts.tolist(), len(batch)]
    return [batch.take(np.arange(a, b)) for a, b in itertools.pairwise(bounds)]


def _copy_candles(
    store: Store, lake: Lake, exchange: str, symbol: str, interval: str, lo: int, end: int
) -> int:
    """Final candles starting in [lo, end) that the lake lacks, a UTC day at a time."""
    written = 0
    day = lo - lo % DAY_US
    while day < end:
        a, b = max(lo, day), min(end, day + DAY_US)
        have = lake.keys(CANDLES, exchange, symbol, a, b)
        chunk = store.candles(exchange, symbol, interval, start=a, end=b)
        new = [c for c in chunk if c.final and (interval, c.start, c.revision) not in have]
        lake.add_candles(new)
        lake.flush()
        written += len(new)
        day += DAY_US
    return written


def catch_up(
    store: Store,
    lake: Lake,
    horizon_us: int,
    progress: ProgressLine | None = None,
    instruments: Collection[tuple[str, str]] | None = None,
) -> CopyReport:
    """At start-up: per instrument (of `instruments`, or all), what the store holds from the
    lake's newest trade time less `horizon_us` (the correction horizon plus lateness: what could
    still have arrived since) and the lake lacks; everything of an instrument the lake has
    never seen."""
    since = {}
    for exchange, symbol, *_ in store.instrument_summary():
        if instruments is None or (exchange, symbol) in instruments:
            newest = lake.newest_ts(exchange, symbol)
            if newest is not None:
                since[(exchange, symbol)] = newest - horizon_us
    return copy_to_lake(store, lake, since, progress=progress, instruments=instruments)


# -- verify --lake -------------------------------------------------------------------------


class LakeInstrument:
    """One instrument's lake files read the way `tickpipe verify` reads a store: its trades and
    final candles streamed a UTC day folder at a time, in time order (bounded memory)."""

    def __init__(
        self,
        lake: Lake,
        exchange: str,
        symbol: str,
        since: int | None = None,
        until: int | None = None,
    ) -> None:
        self.lake = lake
        self.exchange = exchange
        self.symbol = symbol
        self.since = since
        self.until = until

    def _days(self, kind: str) -> Iterator[pa.Table]:
        """Each day folder's rows of `kind` with a time (a trade's ts, a candle's start) in
        [since, until), oldest day first."""
        dataset = self.lake.dataset(kind, self.exchange, self.symbol)
        if dataset is None:
            return
        lo, hi = time_range(self.since, self.until)
        first = "" if self.since is None else day_of(lo)
        last = "~" if self.until is None else day_of(hi - 1)
        time = ds.field("ts" if kind == TRADES else "start")
        for day in self.lake.partitions(self.lake.path(kind, self.exchange, self.symbol), "date"):
            if not first <= day <= last:
                continue
            rows = (ds.field("date") == day) & (time >= lo) & (time < hi)
            with self.lake.reading():
                table = dataset.to_table(SCHEMAS[kind].names, filter=rows)
            yield table.sort_by([(k, "ascending") for k in SORT_KEYS[kind]])

    def trade_batches(self, rows: int = 500_000) -> Iterator[TradeBatch]:
        """Every trade in (ts, seq) order, in batches of at most `rows`."""
        for table in self._days(TRADES):
            n = table.num_rows
            table = table.append_column("exchange", pa.array([self.exchange] * n, pa.string()))
            table = table.append_column("symbol", pa.array([self.symbol] * n, pa.string()))
            for at in range(0, n, rows):
                yield TradeBatch.from_arrow(table.slice(at, rows), source="lake")

    def stored_candles(self, interval: str) -> Iterator[Candle]:
        """The newest revision of each final candle of `interval`, by start; a revision held
        twice comes twice (verify reports it)."""
        for table in self._days(CANDLES):
            rows = table.filter(pc.field("interval") == interval)
            rows = rows.sort_by([("start", "ascending"), ("revision", "descending")]).to_pylist()
            for row, before in zip(rows, [None, *rows[:-1]], strict=True):
                older = before is not None and before["start"] == row["start"]
                if not older or before["revision"] == row["revision"]:
                    yield Candle(exchange=self.exchange, symbol=self.symbol, **row)

    def trade_count(self) -> int:
        """About how many trades `trade_batches` gives, for a progress display: every trade
        file's row count from its footer (a range is not applied: that would read the data)."""
        dataset = self.lake.dataset(TRADES, self.exchange, self.symbol)
        if dataset is None:
            return 0
        with self.lake.reading():
            return int(dataset.count_rows())

    def duplicate_trades(self) -> int:
        """Trades whose trade id the lake holds before (a trade's copies share its day)."""
        return sum(
            t.num_rows - pc.count_distinct(t.column("trade_id")).as_py() for t in self._days(TRADES)
        )

    def newest_starts(self) -> dict[str, int]:
        """The newest final candle start of each interval the lake holds."""
        newest: dict[str, int] = {}
        for table in self._days(CANDLES):
            grouped = table.group_by("interval").aggregate([("start", "max")])
            for interval, start in zip(*grouped.to_pydict().values(), strict=True):
                newest[interval] = max(start, newest.get(interval, start))
        return newest


def instruments(lake: Lake) -> Iterator[tuple[str, str]]:
    """(exchange, symbol) of every instrument with trades or candles in the lake."""
    seen: set[tuple[str, str]] = set()
    for kind in (TRADES, CANDLES):
        for exchange in lake.partitions(lake.path(kind), "exchange"):
            for symbol in lake.partitions(lake.path(kind, exchange), "symbol"):
                if (exchange, symbol) not in seen:
                    seen.add((exchange, symbol))
                    yield exchange, symbol


def verify_lake(
    lake: Lake,
    intervals: list[str] | None = None,
    show: int = 20,
    since: int | None = None,
    until: int | None = None,
    progress: Progress | None = None,
) -> VerifyReport:
    """`tickpipe verify` over the lake (its trades with ts in [since, until)), one instrument
    at a time: the final candles it holds against the recomputation from its trades, through
    verify's own `compare`. The newest windows of each instrument were still open when the
    lake was last written, so a recomputed candle after the lake's newest final one of its
    interval is not reported missing. `progress` is called after each batch of trades."""
    total = VerifyReport(0, 0, 0, [], [], 0)
    names: set[str] = set()
    readers = [LakeInstrument(lake, e, s, since, until) for e, s in sorted(instruments(lake))]
    checked = Checked(len(readers), 0)  # one count over all instruments
    if progress is not None:
        checked.expected_trades = sum(reader.trade_count() for reader in readers)
    for reader in readers:
        newest = reader.newest_starts()
        wanted = intervals or sorted(newest)
        part = compare(
            reader.trade_batches(), reader.stored_candles, wanted, reader.duplicate_trades(),
            max(0, show - len(total.mismatches)), open_after=newest, since=since, until=until,
            checked=checked, progress=progress,
        )  # fmt: skip
        names.update(wanted)
        total.duplicate_trades += part.duplicate_trades
        total.candles += part.candles
        total.mismatches.extend(part.mismatches)
        total.mismatch_count += part.mismatch_count
        total.cut_windows += part.cut_windows
    total.trades = checked.trades
    total.intervals = sorted(names, key=lambda i: (parse_window(i).size, i))
    return total
