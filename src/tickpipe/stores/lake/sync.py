"""Copying from a primary store into the lake (start-up catch-up, `tickpipe export`) and
reading the lake back for `tickpipe verify --lake`.

Both copies write only what the lake lacks, compared by key over the copied range, so they
may run over a range the lake holds already (see the package docstring).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
from pyarrow import fs

from tickpipe.engine.windows import parse_window
from tickpipe.records import TradeBatch
from tickpipe.stores.base import Store
from tickpipe.stores.lake.layout import CANDLES, DAY_US, SCHEMAS, TRADES, Lake
from tickpipe.stores.reads import Dialect
from tickpipe.verify import Mismatch, VerifyReport, verify

FOREVER_US = 2**62
Progress = Callable[[str], None]


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
    progress: Progress | None = None,
    rows: int = 100_000,
) -> CopyReport:
    """Write the store's trades with `ts` in [since, until) and its final candles starting in
    the same range (less the largest window, whose candles began before their trades) that the
    lake lacks. `since` may be given per (exchange, symbol). Streams in batches of `rows`."""
    report = CopyReport()
    intervals = store.intervals()
    widest = max((parse_window(i).size for i in intervals), default=0)
    summary = store.instrument_summary()
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
        new = [c for c in chunk if c.final and (interval, c.start) not in have]
        lake.add_candles(new)
        lake.flush()
        written += len(new)
        day += DAY_US
    return written


def catch_up(
    store: Store, lake: Lake, horizon_us: int, progress: Progress | None = None
) -> CopyReport:
    """At start-up: per instrument, what the store holds from the lake's newest trade time less
    `horizon_us` (the correction horizon plus lateness: what could still have arrived since)
    and the lake lacks; everything for an instrument the lake has never seen."""
    since = {}
    for exchange, symbol, *_ in store.instrument_summary():
        newest = lake.newest_ts(exchange, symbol)
        if newest is not None:
            since[(exchange, symbol)] = newest - horizon_us
    return copy_to_lake(store, lake, since, progress=progress)


# -- verify --lake -------------------------------------------------------------------------


class LakeInstrument:
    """One instrument's lake files as the `trades` and `candles` tables verify's SQL reads
    (DuckDB scanning the pyarrow datasets: its httpfs is not needed, nor reachable here)."""

    dialect = Dialect()

    def __init__(self, lake: Lake, exchange: str, symbol: str) -> None:
        self._con = duckdb.connect()
        for kind in (TRADES, CANDLES):
            dataset = lake.dataset(kind, exchange, symbol)
            columns = ", ".join(SCHEMAS[kind].names)
            files = SCHEMAS[kind].empty_table() if dataset is None else dataset
            self._con.register(f"{kind}_files", files)
            self._con.execute(
                f"CREATE VIEW {kind} AS SELECT {_literal(exchange)} AS exchange, "
                f"{_literal(symbol)} AS symbol, {columns} FROM {kind}_files"
            )

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        return self._con.execute(sql, params or None).fetchall()

    def intervals(self) -> list[str]:
        return [r[0] for r in self.query("SELECT DISTINCT interval FROM candles ORDER BY 1")]

    def close(self) -> None:
        self._con.close()


def _literal(text: str) -> str:
    """`text` as an SQL string literal (a view's text cannot take parameters)."""
    return "'" + text.replace("'", "''") + "'"


def instruments(lake: Lake) -> Iterator[tuple[str, str]]:
    """(exchange, symbol) of every instrument with trades or candles in the lake."""
    seen: set[tuple[str, str]] = set()
    for kind in (TRADES, CANDLES):
        for ex in lake.list(lake.path(kind)):
            if ex.type != fs.FileType.Directory or not ex.base_name.startswith("exchange="):
                continue
            for sym in lake.list(ex.path):
                if sym.type == fs.FileType.Directory and sym.base_name.startswith("symbol="):
                    key = (ex.base_name.split("=", 1)[1], sym.base_name.split("=", 1)[1])
                    if key not in seen:
                        seen.add(key)
                        yield key


def verify_lake(lake: Lake, intervals: list[str] | None = None, show: int = 20) -> VerifyReport:
    """`tickpipe verify` over the lake, one instrument at a time (bounded reads): the final
    candles it holds against the recomputation from its trades. The newest windows of each
    instrument were still open when the lake was last written, so a recomputed candle after
    the lake's newest final one of its interval is not reported missing."""
    total = VerifyReport(0, 0, 0, [], [], 0)
    names: set[str] = set()
    for exchange, symbol in sorted(instruments(lake)):
        reader = LakeInstrument(lake, exchange, symbol)
        try:
            wanted = intervals or reader.intervals()
            part = verify(reader, wanted, max(0, show - len(total.mismatches)),  # type: ignore[arg-type]
                          through_newest_stored=True)  # fmt: skip
            # A candle written twice matches its recomputation twice: counted on its own.
            twice = reader.query(
                "SELECT interval, start, count(*) FROM candles GROUP BY ALL HAVING count(*) > 1 "
                "ORDER BY 1, 2"
            )
        finally:
            reader.close()
        part.mismatch_count += len(twice)
        for interval, start, n in twice[: max(0, show - len(part.mismatches))]:
            problem = f"duplicate: the lake holds this candle {n} times"
            part.mismatches.append(Mismatch(exchange, symbol, interval, start, problem))
        names.update(wanted)
        total.trades += part.trades
        total.duplicate_trades += part.duplicate_trades
        total.candles += part.candles
        total.mismatches.extend(part.mismatches)
        total.mismatch_count += part.mismatch_count
    total.intervals = sorted(names, key=lambda i: (parse_window(i).size, i))
    return total
