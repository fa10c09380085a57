"""`tickpipe export --format csv`: a store's trades and final candles as two CSV files.

`DIR/trades.csv` holds the trades with `ts` in [since, until) in `TRADE_SCHEMA`'s columns,
ordered by (exchange, symbol), then (ts, seq); `DIR/candles.csv` the final candles starting
in the range, every `Candle` field, by interval, then (exchange, symbol), then start. Both
have a header row; floats are written in their shortest exact form, so the files read back to
the very values stored (`read_trades`, `read_candles`). Each file is written under a hidden
temporary name and renamed when complete. Streams in bounded batches from any store.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv

from tickpipe.records import CANDLE_FIELDS, TRADE_SCHEMA, Candle
from tickpipe.stores.base import Store

TRADES_FILE, CANDLES_FILE = "trades.csv", "candles.csv"
_CANDLE_TYPES = {"exchange": pa.string(), "symbol": pa.string(), "interval": pa.string(),
                 "final": pa.bool_()}  # fmt: skip
_CANDLE_INTS = {"start", "trades", "first_seq", "last_seq", "revision", "updated_at"}
CANDLE_SCHEMA = pa.schema(
    [
        (n, _CANDLE_TYPES.get(n, pa.int64() if n in _CANDLE_INTS else pa.float64()))
        for n in CANDLE_FIELDS
    ]
)
ROWS = 100_000


@dataclass
class CsvReport:
    trades: int = 0
    candles: int = 0
    bytes: int = 0


def export_csv(
    store: Store,
    directory: Path,
    since: int,
    until: int,
    progress: Callable[[str], None] | None = None,
) -> CsvReport:
    """Write `trades.csv` and `candles.csv` of [since, until) under `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    report = CsvReport()
    tables = getattr(store, "trade_tables", None)  # every column, each trade's own source
    with _Csv(directory / TRADES_FILE, TRADE_SCHEMA) as out:
        if tables is not None:
            for table in tables(ROWS, since, until):
                report.trades += out.write(table.select(TRADE_SCHEMA.names).cast(TRADE_SCHEMA))
        else:  # a store without them: its batches name one source each (see its reader)
            for batch in store.trade_batches(ROWS, since, until):
                report.trades += out.write(batch.to_arrow().cast(TRADE_SCHEMA))
    if progress is not None:
        progress(f"{report.trades:,} trades written to {directory / TRADES_FILE}")
    with _Csv(directory / CANDLES_FILE, CANDLE_SCHEMA) as out:
        for interval in store.intervals():
            chunk: list[Candle] = []
            for candle in store.stored_candles(interval, ROWS, since, until):
                if candle.final:
                    chunk.append(candle)
                if len(chunk) >= ROWS:
                    report.candles += out.write(_candle_table(chunk))
                    chunk = []
            report.candles += out.write(_candle_table(chunk))
    if progress is not None:
        progress(f"{report.candles:,} final candles written to {directory / CANDLES_FILE}")
    report.bytes = sum((directory / name).stat().st_size for name in (TRADES_FILE, CANDLES_FILE))
    return report


def _candle_table(candles: list[Candle]) -> pa.Table:
    names = CANDLE_SCHEMA.names
    return pa.table({n: [getattr(c, n) for c in candles] for n in names}, schema=CANDLE_SCHEMA)


class _Csv:
    """One CSV file, written under a hidden name and renamed once complete."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.temp = path.with_name(f".{path.name}.tmp")
        self.writer = pcsv.CSVWriter(str(self.temp), schema)

    def write(self, table: pa.Table) -> int:
        if table.num_rows:
            self.writer.write_table(table)
        return table.num_rows

    def __enter__(self) -> _Csv:
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.writer.close()
        if kind is None:
            os.replace(self.temp, self.path)
        else:
            self.temp.unlink(missing_ok=True)


def read_trades(path: Path) -> pa.Table:
    """A `trades.csv` back, in `TRADE_SCHEMA`'s types."""
    return _read(path, TRADE_SCHEMA)


def read_candles(path: Path) -> pa.Table:
    """A `candles.csv` back, in the candle fields' types."""
    return _read(path, CANDLE_SCHEMA)


def _read(path: Path, schema: pa.Schema) -> pa.Table:
    convert = pcsv.ConvertOptions(
        column_types=schema, strings_can_be_null=False, quoted_strings_can_be_null=False
    )
    return pcsv.read_csv(str(path), convert_options=convert).select(schema.names)
