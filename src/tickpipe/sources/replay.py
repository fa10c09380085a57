"""Replay trades from a file (JSONL, CSV or Parquet) as a source, at original speed or faster.

Replaying recorded trades reproduces a day of market data in minutes, and exporting with
`write_trades` then replaying converges to the same stored rows (trade ids are kept).

The file is read in chunks of `batch_size` rows, so memory stays bounded whatever its size,
and every chunk is converted column-wise into `TradeBatch`es. A bad row (a missing field, a
price that is not a positive number, a symbol that is not BASE-QUOTE, ...) goes to the
dead-letter file with the reason, and the rest of the file goes on.

Columns (or JSON keys) are the fields of `Trade`. Required: exchange, symbol, trade_id, price,
size, ts. Optional: source (default: the replay's name), seq (default: the trade id when it is
a number, else the row's line or row number), side (default unknown), recv_ts (default: the
time of emission) and raw_symbol (default: the file's symbol when it is not already BASE-QUOTE).
"""

from __future__ import annotations

import asyncio
import csv
import io
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from tickpipe.deadletter import MAX_PAYLOAD_CHARS, cut
from tickpipe.records import (
    SIDE_BUY,
    SIDE_SELL,
    SIDE_UNKNOWN,
    TRADE_SCHEMA,
    Instrument,
    Trade,
    TradeBatch,
)
from tickpipe.sources import SourceContext
from tickpipe.symbols import SymbolError, normalize_symbol

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
REQUIRED = ("exchange", "symbol", "trade_id", "price", "size", "ts")
FIELDS: tuple[str, ...] = Trade.__struct_fields__

_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INT = r"^-?[0-9]{1,18}$"
_NUMERIC_ID = r"^[0-9]{1,18}$"
_DECIMAL_ID = r"^(0|[1-9][0-9]{0,17})$"  # exactly str(int): no sign, no leading zero
_SIDES = {"buy": SIDE_BUY, "sell": SIDE_SELL, "unknown": SIDE_UNKNOWN, "": SIDE_UNKNOWN}
_BAD_SIDE = 2
_PACE_TICK = 0.01  # at most 100 batches a second when pacing: later by <= 10 ms, never earlier
_CSV_BLOCK = 1 << 20
_PARQUET_BUFFER = 1 << 16

Micros = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class _JsonRow(msgspec.Struct, kw_only=True):
    exchange: str
    symbol: str
    trade_id: str | int
    price: float
    size: float
    ts: Micros
    source: str | None = None
    seq: Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)] | None = None
    side: str | None = None
    recv_ts: Micros | None = None
    raw_symbol: str | None = None


def file_format(path: str | Path) -> str:
    """`jsonl`, `csv` or `parquet`, from the file's suffix; a ValueError names the allowed ones."""
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        allowed = ", ".join(FORMATS)
        raise ValueError(f"trade file {str(path)!r}: suffix {suffix!r} is not one of {allowed}")
    return FORMATS[suffix]


def write_trades(path: str | Path, trades: Iterable[Trade] | TradeBatch) -> int:
    """Write trades to JSONL, CSV or Parquet (by suffix), readable by `FileReplay`; returns rows."""
    fmt = file_format(path)
    if isinstance(trades, TradeBatch):
        table = trades.to_arrow().cast(TRADE_SCHEMA)
    else:
        rows = list(trades)
        table = pa.table(
            [pa.array([getattr(t, f.name) for t in rows], f.type) for f in TRADE_SCHEMA],
            schema=TRADE_SCHEMA,
        )
    if fmt == "parquet":
        pq.write_table(table, path)
    elif fmt == "csv":
        pacsv.write_csv(table, path)
    else:
        encoder = msgspec.json.Encoder()
        with open(path, "wb") as out:
            for batch in table.to_batches(max_chunksize=10_000):
                out.write(b"".join(encoder.encode(row) + b"\n" for row in batch.to_pylist()))
    return table.num_rows


@dataclass(slots=True)
class _Rows:
    """Converted good rows of one chunk, in file order, sliced into batches when due."""

    sources: list[str]
    source: np.ndarray  # int32 index into sources
    instruments: list[Instrument]
    instrument: np.ndarray  # int32 index into instruments
    trade_id: np.ndarray | None  # object: str; None when every id is str(seq)
    seq: np.ndarray
    price: np.ndarray
    size: np.ndarray
    side: np.ndarray
    ts: np.ndarray
    recv_ts: np.ndarray
    recv_missing: np.ndarray  # bool: fill with the time of emission

    def __len__(self) -> int:
        return len(self.ts)

    def batches(self, start: int, stop: int, now_us: int) -> list[TradeBatch]:
        """Rows [start, stop) as one batch per source, each with only its own instruments."""
        part = slice(start, stop)
        recv = np.where(self.recv_missing[part], now_us, self.recv_ts[part])
        source = self.source[part]
        codes = np.unique(source)
        out = []
        for code in codes:
            take = np.arange(stop - start) if len(codes) == 1 else np.flatnonzero(source == code)
            used, local = np.unique(self.instrument[part][take], return_inverse=True)
            out.append(
                TradeBatch(
                    source=self.sources[code],
                    instruments=[self.instruments[i] for i in used],
                    instrument=local.astype(np.int32),
                    seq=self.seq[part][take],
                    price=self.price[part][take],
                    size=self.size[part][take],
                    side=self.side[part][take],
                    ts=self.ts[part][take],
                    recv_ts=recv[take],
                    trade_id=None if self.trade_id is None else self.trade_id[part][take],
                )
            )
        return out


# Reports one bad row: its line or row number, the reason (a short category, as dead letters
# are counted by reason), the error naming the value, and the row itself.
Reject = Callable[[int | None, str, str, Any], None]


class FileReplay:
    """A `Source` that replays a trade file.

    `speed` 1.0 keeps the original gaps between trades, N makes them N times shorter, and
    None (or inf) emits as fast as the pipeline takes them.
    """

    def __init__(
        self,
        path: str | Path,
        speed: float | None = 1.0,
        batch_size: int = 10_000,
        name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.format = file_format(self.path)
        if not self.path.is_file():
            raise ValueError(f"trade file {str(self.path)!r} does not exist")
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive, or None for as fast as possible: {speed!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
        self.speed = None if speed is None or math.isinf(speed) else float(speed)
        self.batch_size = batch_size
        self.name = name or "replay"
        self._symbols: dict[str, str | None] = {}  # raw text -> BASE-QUOTE, None if not one
        self._encoder = msgspec.json.Encoder(enc_hook=str)
        if self.format == "parquet":
            try:
                names = pq.read_schema(self.path).names
            except pa.ArrowException as exc:
                raise ValueError(
                    f"trade file {str(self.path)!r} is not a readable Parquet file ({exc})"
                ) from None
            self._check_columns(names)
        elif self.format == "csv":
            with self.path.open(newline="", encoding="utf-8-sig", errors="replace") as file:
                self._check_columns(next(csv.reader(file), []))

    async def run(self, ctx: SourceContext) -> None:
        """Emit the file's trades, paced by their event time, then return."""

        def reject(number: int | None, reason: str, error: str, data: Any) -> None:
            ctx.stats.malformed += 1
            where = "row" if self.format == "parquet" else "line"
            record = {"file": str(self.path), where: number, "error": error, "data": data}
            if isinstance(data, str) and len(data) > MAX_PAYLOAD_CHARS // 2:
                # cut here, so that the letter's payload stays a whole JSON record
                record["data"], record["cut"] = cut(data, MAX_PAYLOAD_CHARS // 2)
            ctx.dead_letters.write(self.name, reason, self._encoder.encode(record))

        chunks = self._chunks(reject)
        pace = _Pace(self.speed)
        ctx.stats.connected = True
        try:
            while True:
                # Reading and converting a chunk takes milliseconds: off the event loop.
                rows = await asyncio.to_thread(next, chunks, None)
                if rows is None:
                    return
                await pace.emit(rows, ctx)
        finally:
            ctx.stats.connected = False

    def _chunks(self, reject: Reject) -> Iterator[_Rows]:
        """The file's good rows, chunk by chunk; bad ones go to `reject`."""
        chunks = {"jsonl": self._read_jsonl, "csv": self._read_csv, "parquet": self._read_parquet}
        for batch, numbers, data in chunks[self.format](reject):
            rows = self._convert(batch, numbers, data, reject)
            if len(rows):
                yield rows

    def _read_jsonl(self, reject: Reject) -> Iterator[tuple[pa.RecordBatch, np.ndarray, Callable]]:
        decoder = msgspec.json.Decoder(_JsonRow, strict=False)
        with self.path.open("rb") as file:
            lines: list[bytes] = []
            numbers: list[int] = []
            rows: list[_JsonRow] = []
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    rows.append(decoder.decode(line))
                except msgspec.ValidationError as exc:
                    reject(number, "row does not match the trade fields", str(exc), _text(line))
                    continue
                except msgspec.DecodeError as exc:
                    reject(number, "row is not JSON", str(exc), _text(line))
                    continue
                lines.append(line)
                numbers.append(number)
                if len(rows) == self.batch_size:
                    yield _json_batch(rows), np.array(numbers), _line_data(lines)
                    lines, numbers, rows = [], [], []
            if rows:
                yield _json_batch(rows), np.array(numbers), _line_data(lines)

    def _read_csv(self, reject: Reject) -> Iterator[tuple[pa.RecordBatch, np.ndarray, Callable]]:
        # Lines of rows the parser rejected, to number the rows it kept. Those before the
        # current block are only counted, so a file of bad rows cannot fill memory.
        skipped: list[int] = []
        skipped_before = 0
        # A stray quote makes the parser read on to the next quote, across lines: one
        # "row" of many lines. Its first line is the bad one; the lines it took in are
        # read again on their own (number, text), and kept in their place.
        swallowed: list[tuple[int, str]] = []

        def invalid_row(row: Any) -> str:
            first, *rest = row.text.split("\n")
            if row.number is not None:
                skipped.extend(range(row.number, row.number + 1 + len(rest)))
                swallowed.extend((row.number + 1 + k, line) for k, line in enumerate(rest))
            if rest:
                reject(row.number, "row has a stray quote", "a quote that is never closed", first)
            else:
                error = f"expected {row.expected_columns} columns, got {row.actual_columns}"
                reject(row.number, "row has the wrong number of CSV columns", error, first)
            return "skip"

        file = _CutLines(self.path.open("rb", buffering=0), _CSV_BLOCK // 2)
        reader = pacsv.open_csv(
            file,
            read_options=pacsv.ReadOptions(use_threads=False, block_size=_CSV_BLOCK),
            parse_options=pacsv.ParseOptions(invalid_row_handler=invalid_row),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in FIELDS},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
        names = reader.schema.names
        self._check_columns(names)
        parsed = 0
        try:
            for block in reader:
                index = np.arange(parsed, parsed + block.num_rows) + skipped_before
                parsed += block.num_rows
                lines = _csv_lines(index, np.array(sorted(skipped)))
                if len(lines):
                    skipped_before += sum(1 for line in skipped if line < lines[-1])
                    skipped[:] = [line for line in skipped if line > lines[-1]]
                if swallowed:
                    block, lines = _with_lines(block, lines, names, swallowed, reject)
                    swallowed.clear()
                for start in range(0, block.num_rows, self.batch_size):
                    batch = block.slice(start, self.batch_size)
                    yield batch, lines[start : start + self.batch_size], _record_data(batch)
        finally:
            file.close()

    def _read_parquet(
        self, reject: Reject
    ) -> Iterator[tuple[pa.RecordBatch, np.ndarray, Callable]]:
        # Column pages streamed through a small buffer and decoded on this thread: pyarrow's
        # defaults (read a whole row group ahead, decode its columns in parallel) hold about
        # 30 MB more for a file written with 1M-row groups.
        file = pq.ParquetFile(self.path, pre_buffer=False, buffer_size=_PARQUET_BUFFER)
        names = file.schema_arrow.names
        self._check_columns(names)
        row = 1
        columns = [n for n in FIELDS if n in names]
        for batch in file.iter_batches(self.batch_size, columns=columns, use_threads=False):
            yield batch, np.arange(row, row + batch.num_rows), _record_data(batch)
            row += batch.num_rows

    def _check_columns(self, names: list[str]) -> None:
        missing = [name for name in REQUIRED if name not in names]
        if missing:
            raise ValueError(
                f"trade file {str(self.path)!r} has no column {', '.join(missing)} "
                f"(required: {', '.join(REQUIRED)})"
            )

    def _convert(
        self, batch: pa.RecordBatch, numbers: np.ndarray, data: Callable, reject: Reject
    ) -> _Rows:
        """Columns of any type (text from CSV, typed from Parquet) checked and made into arrays."""
        cols = _Columns(batch)
        check = _Check(batch.num_rows)
        exchange = cols.required_text("exchange", check)
        symbol = cols.required_text("symbol", check)
        trade_id = cols.required_text("trade_id", check)
        price = cols.positive("price", check)
        size = cols.positive("size", check)
        ts, _ = cols.integer("ts", check, required=True, micros=True)
        seq, seq_present = cols.integer("seq", check)
        recv_ts, recv_present = cols.integer("recv_ts", check, micros=True)
        symbol_code, symbols = _encode(symbol)
        normalized = [self._normalize(s) for s in symbols]
        known = np.array([s is not None for s in normalized] + [False])
        check.fail(
            ~known[symbol_code],
            "symbol is not BASE-QUOTE",
            lambda i: f"{cols.value('symbol', i)!r} (write it as BASE-QUOTE, e.g. BTC-USDT)",
        )
        side = cols.side(check)
        for i, reason, error in check.errors:
            reject(int(numbers[i]), reason, error, data(i))

        keep = np.flatnonzero(~check.bad)
        instruments, instrument = _instruments(
            exchange, symbols, normalized, symbol_code, cols.text("raw_symbol"), keep
        )
        source_code, sources = _encode(cols.text("source"))
        sources = [s or self.name for s in sources] + [self.name]
        # seq: the file's, else the trade id when it is a number, else the line or row number.
        numeric = pc.match_substring_regex(trade_id, _NUMERIC_ID).fill_null(False)
        id_seq = pc.cast(pc.if_else(numeric, trade_id, "0"), pa.int64()).to_numpy()
        fallback = np.where(numeric.to_numpy(zero_copy_only=False), id_seq, numbers)
        seq = np.where(seq_present, seq, fallback)[keep]
        # Ids that are all str(seq) (most exchanges' numeric ids) travel as seq alone, as from
        # a live feed: no Python string per trade, and the engine's fast path for them.
        decimal = pc.match_substring_regex(trade_id, _DECIMAL_ID).fill_null(False)
        ids = None
        if not (pc.all(decimal).as_py() and np.array_equal(seq, id_seq[keep])):
            ids = trade_id.fill_null("").to_numpy(zero_copy_only=False)[keep]
        return _Rows(
            sources=sources,
            source=source_code[keep].astype(np.int32),
            instruments=instruments,
            instrument=instrument,
            trade_id=ids,
            seq=seq,
            price=price[keep],
            size=size[keep],
            side=side[keep],
            ts=ts[keep],
            recv_ts=recv_ts[keep],
            recv_missing=~recv_present[keep],
        )

    def _normalize(self, raw: str) -> str | None:
        if raw not in self._symbols:
            try:
                self._symbols[raw] = normalize_symbol(raw)
            except SymbolError:
                self._symbols[raw] = None
        return self._symbols[raw]


class _Pace:
    """Maps event time to wall time: a trade is due (ts - first ts) / speed after the start."""

    def __init__(self, speed: float | None) -> None:
        self.speed = speed
        self.first_ts: int | None = None
        self.start = 0.0
        self.max_ts = -(2**63)
        self.last_emit = 0.0

    async def emit(self, rows: _Rows, ctx: SourceContext) -> None:
        if self.speed is None:
            await _emit(rows.batches(0, len(rows), time.time_ns() // 1000), ctx)
            return
        # Out-of-order trades go with the trade before them: due times follow the running max.
        clock_ts = np.maximum.accumulate(np.maximum(rows.ts, self.max_ts))
        self.max_ts = int(clock_ts[-1])
        if self.first_ts is None:
            self.first_ts = int(clock_ts[0])
            self.start = time.monotonic()
        due = self.start + (clock_ts - self.first_ts) / 1e6 / self.speed
        i = 0
        while i < len(rows):
            wake = max(float(due[i]), self.last_emit + _PACE_TICK)
            delay = wake - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.monotonic()
            j = max(i + 1, int(np.searchsorted(due, now, side="right")))
            self.last_emit = now
            await _emit(rows.batches(i, j, time.time_ns() // 1000), ctx)
            i = j


async def _emit(batches: list[TradeBatch], ctx: SourceContext) -> None:
    for batch in batches:
        ctx.stats.frames += 1
        ctx.stats.trades += len(batch)
        await ctx.emit(batch)


class _Columns:
    """The columns of one chunk, read as the Trade fields whatever their stored type."""

    def __init__(self, batch: pa.RecordBatch) -> None:
        self.batch = batch
        self.n = batch.num_rows

    def column(self, name: str) -> pa.Array | None:
        if name not in self.batch.schema.names:
            return None
        col = self.batch.column(name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        return None if pa.types.is_null(col.type) else col

    def value(self, name: str, i: int) -> Any:
        """Row i's value as stored, for error messages."""
        return self.batch.column(name)[i].as_py()

    def text(self, name: str, lower: bool = False) -> pa.Array:
        col = self.column(name)
        if col is None:
            return pa.nulls(self.n, pa.string())
        if not pa.types.is_string(col.type):
            col = col.cast(pa.string())
        return pc.utf8_lower(col) if lower else col

    def required_text(self, name: str, check: _Check) -> pa.Array:
        col = self.text(name)
        filled = pc.greater(pc.utf8_length(col), 0).fill_null(False)
        check.fail(~filled.to_numpy(zero_copy_only=False), f"{name} is missing")
        return col

    def positive(self, name: str, check: _Check) -> np.ndarray:
        values, present, ok = _floats(self.column(name), self.n)
        check.fail(~present, f"{name} is missing")
        check.fail(~ok, f"{name} is not a number", lambda i: repr(self.value(name, i)))
        check.fail(
            ~(np.isfinite(values) & (values > 0)),
            f"{name} is not positive",
            lambda i: repr(self.value(name, i)),
        )
        return values

    def integer(
        self, name: str, check: _Check, required: bool = False, micros: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values and where present; a time (`micros`) must not be negative."""
        values, present, ok = _ints(self.column(name), self.n)
        if required:
            check.fail(~present, f"{name} is missing")
        unit = " (want microseconds)" if micros else ""
        check.fail(
            present & ~ok,
            f"{name} is not an integer",
            lambda i: f"{self.value(name, i)!r}{unit}",
        )
        if micros:
            check.fail(
                present & (values < 0),
                f"{name} is negative",
                lambda i: repr(self.value(name, i)),
            )
        return values, present

    def side(self, check: _Check) -> np.ndarray:
        code, names = _encode(self.text("side", lower=True))
        side_of = np.array([_SIDES.get(s, _BAD_SIDE) for s in names] + [SIDE_UNKNOWN], np.int8)
        side = side_of[code]
        check.fail(
            side == _BAD_SIDE,
            "side is not buy, sell or unknown",
            lambda i: repr(self.value("side", i)),
        )
        return side


def _instruments(
    exchange: pa.Array,
    symbols: list[str],
    normalized: list[str | None],
    symbol_code: np.ndarray,
    raw_symbol: pa.Array,
    keep: np.ndarray,
) -> tuple[list[Instrument], np.ndarray]:
    """Instruments of the rows `keep` and each row's index into them.

    Built from distinct (exchange, symbol, raw_symbol) codes, so the Python work is per
    instrument, not per row. Without a raw_symbol, the file's symbol is kept as raw_symbol
    when normalizing changed it.
    """
    exchange_code, exchanges = _encode(exchange)
    raw_code, raws = _encode(raw_symbol)
    default_raw = [
        s if norm is not None and s != norm else ""
        for s, norm in zip(symbols, normalized, strict=True)
    ]
    raw_values = [*raws, *default_raw, ""]
    raw_index = np.where(raw_code < len(raws), raw_code, len(raws) + symbol_code)
    n_sym = len(symbols) + 1
    key = (exchange_code * n_sym + symbol_code) * len(raw_values) + raw_index
    distinct, code = np.unique(key[keep], return_inverse=True)
    index: dict[Instrument, int] = {}
    remap = []
    for k in distinct.tolist():
        rest, r = divmod(k, len(raw_values))
        e, s = divmod(rest, n_sym)
        instrument = Instrument(exchanges[e], normalized[s] or "", raw_values[r])
        remap.append(index.setdefault(instrument, len(index)))
    return list(index), np.array(remap, np.int32)[code] if remap else np.empty(0, np.int32)


class _Check:
    """Marks bad rows; each row keeps the first reason it failed for."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, bool)
        self.errors: list[tuple[int, str, str]] = []

    def fail(
        self, failed: np.ndarray, reason: str, detail: Callable[[int], str] | None = None
    ) -> None:
        """Rows where `failed` is true are bad; `detail(i)` shows row i's offending value."""
        for i in np.flatnonzero(failed & ~self.bad).tolist():
            self.bad[i] = True
            self.errors.append((i, reason, f"{reason}: {detail(i)}" if detail else reason))


def _encode(col: pa.Array) -> tuple[np.ndarray, list[str]]:
    """Codes and distinct values of a text column; null gets the code len(values)."""
    encoded = pc.dictionary_encode(col)
    values = encoded.dictionary.to_pylist()
    codes = encoded.indices.fill_null(len(values)).to_numpy(zero_copy_only=False)
    return codes.astype(np.int64), values


def _floats(col: pa.Array | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values, present (not null) and ok (a number) of a column of any type."""
    if col is None:
        return np.zeros(n), np.zeros(n, bool), np.zeros(n, bool)
    present = col.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        ok = pc.match_substring_regex(col, _FLOAT).fill_null(False)
        values = pc.cast(pc.if_else(ok, col, "0"), pa.float64())
        ok = ok.to_numpy(zero_copy_only=False)
    elif pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        values, ok = pc.cast(col, pa.float64()), present
    elif pa.types.is_decimal(col.type):
        values, ok = pc.cast(col, pa.float64(), safe=False), present
    else:
        return np.zeros(n), present, np.zeros(n, bool)
    return values.fill_null(0.0).to_numpy(zero_copy_only=False), present, ok


def _ints(col: pa.Array | None, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values, present and ok (an int64) of a column of any type; timestamps become µs."""
    zeros = np.zeros(n, np.int64)
    if col is None:
        return zeros, np.zeros(n, bool), np.zeros(n, bool)
    present = col.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        ok = pc.match_substring_regex(col, _INT).fill_null(False)
        values = pc.cast(pc.if_else(ok, col, "0"), pa.int64())
        return values.to_numpy(zero_copy_only=False), present, ok.to_numpy(zero_copy_only=False)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.timestamp("us", col.type.tz)).cast(pa.int64())
    if pa.types.is_integer(col.type) and col.type != pa.uint64():
        values = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        return values, present, present
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        wide = col.cast(pa.float64()).fill_null(0.5).to_numpy(zero_copy_only=False)
        ok = present & np.isfinite(wide) & (np.floor(wide) == wide) & (np.abs(wide) < 2**62)
        return np.where(ok, wide, 0).astype(np.int64), present, ok
    return zeros, present, np.zeros(n, bool)


def _json_batch(rows: list[_JsonRow]) -> pa.RecordBatch:
    columns = {
        "source": pa.array([r.source for r in rows], pa.string()),
        "exchange": pa.array([r.exchange for r in rows], pa.string()),
        "symbol": pa.array([r.symbol for r in rows], pa.string()),
        "raw_symbol": pa.array([r.raw_symbol for r in rows], pa.string()),
        "trade_id": pa.array([str(r.trade_id) for r in rows], pa.string()),
        "seq": pa.array([r.seq for r in rows], pa.int64()),
        "price": pa.array([r.price for r in rows], pa.float64()),
        "size": pa.array([r.size for r in rows], pa.float64()),
        "side": pa.array([r.side for r in rows], pa.string()),
        "ts": pa.array([r.ts for r in rows], pa.int64()),
        "recv_ts": pa.array([r.recv_ts for r in rows], pa.int64()),
    }
    return pa.RecordBatch.from_pydict(columns)


class _CutLines(io.RawIOBase):
    """A file whose lines are cut to `limit` bytes, so that a huge garbage line reaches the
    CSV parser (which fails on a line longer than its block) as one short bad row."""

    def __init__(self, file: BinaryIO, limit: int) -> None:
        self.file = file
        self.limit = limit
        self.run = 0  # bytes of the current line so far

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.file.close()
        super().close()

    def readinto(self, buffer: Any) -> int:
        while True:
            chunk = self.file.read(len(buffer))
            if not chunk:
                return 0
            out = self._cut(chunk)
            if out:
                buffer[: len(out)] = out
                return len(out)

    def _cut(self, chunk: bytes) -> bytes:
        parts = chunk.split(b"\n")
        if self.run + len(parts[0]) <= self.limit and max(map(len, parts)) <= self.limit:
            self.run = len(parts[-1]) + (self.run if len(parts) == 1 else 0)
            return chunk
        out = []
        for i, part in enumerate(parts):
            run = self.run if i == 0 else 0
            out.append(part[: max(0, self.limit - run)])
            self.run = run + len(part)
        return b"\n".join(out)


def _with_lines(
    block: pa.RecordBatch, lines: np.ndarray, names: list[str],
    extra: list[tuple[int, str]], reject: Reject,
) -> tuple[pa.RecordBatch, np.ndarray]:  # fmt: skip
    """`block` (rows on `lines`) with the `extra` (line, text) rows merged in line order.

    The extra lines are split on commas with no quoting, so one more stray quote cannot take
    in further lines: its text stays in the value, which then fails its check on its own.
    """
    kept = [n for n in names if n in FIELDS]
    rows, numbers = [], []
    for number, text in extra:
        values = text.rstrip("\r").split(",")
        if len(values) != len(names):
            error = f"expected {len(names)} columns, got {len(values)}"
            reject(number, "row has the wrong number of CSV columns", error, text)
            continue
        rows.append([values[names.index(n)] or None for n in kept])
        numbers.append(number)
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in kept]
    added = pa.table([pa.array(c, pa.string()) for c in columns], names=kept)
    table = pa.concat_tables([pa.Table.from_batches([block]).select(kept), added])
    all_lines = np.concatenate([lines, np.array(numbers, np.int64)])
    order = np.argsort(all_lines, kind="stable")
    merged = table.take(pa.array(order)).combine_chunks()
    batches = merged.to_batches()
    return (batches[0] if batches else block.select(kept).slice(0, 0)), all_lines[order]


def _csv_lines(index: np.ndarray, skipped: np.ndarray) -> np.ndarray:
    """Line numbers of data rows `index` (0-based, counting skipped rows before `skipped`).

    Data row k sits on line k + 2 (after the header) plus one per skipped line before it.
    """
    lines = index + 2
    while True:
        moved = index + 2 + np.searchsorted(skipped, lines, side="right")
        if np.array_equal(moved, lines):
            return lines
        lines = moved


def _text(line: bytes) -> str:
    return line.decode("utf-8", "replace").rstrip("\r\n")


def _line_data(lines: list[bytes]) -> Callable[[int], str]:
    return lambda i: _text(lines[i])


def _record_data(batch: pa.RecordBatch) -> Callable[[int], dict]:
    return lambda i: batch.slice(i, 1).to_pylist()[0]
