"""The embedded store: one DuckDB file holding trades, candles, rolling statistics and events.

Writes are bulk only: a trade batch goes in as an Arrow table, candles as one Arrow table per
flush, all in one transaction, so after a crash the file holds whole flushes and nothing else.
Candles are whole-row upserts keyed (exchange, symbol, interval, start) that never replace a
newer revision (the rule of `stores/sql.py`), so a replay converges to the same rows. The reads
and the front of `write` are shared with PostgreSQL (`stores/sql.py`, `stores/reads.py`); what
is here is DuckDB's own: schema, connection, the Arrow write path and the Arrow restore reader.

Trades are read through the `trades` view. The writer stores a trade batch in
`coded_trade_rows`: its instrument as a code into `trade_instruments` (source, exchange, symbol,
raw symbol) and its side as a number, which the view spells out again; text columns per trade
made up two thirds of DuckDB's cost per stored trade (insert, WAL and checkpoint). A trade id
that is the decimal form of `seq` (most exchanges) is stored as NULL and spelled out by the
view too. Trades given as Arrow tables (from files) and the rows of files written before the
coded layout stay in `trade_rows`, one text column each, which the view reads beside them.

Trades carry no unique index: DuckDB's index would cut insert speed to a third. Uniqueness on
(exchange, symbol, trade_id) is kept by the engine, which accepts a trade id once and, after a
restart, reloads the ids it must still recognise; `tickpipe verify` checks it.

Nor is there an index to read the history in instrument order: a sort or a grouping of all
trades at once outgrows any memory limit at tens of millions of trades. So `trade_batches`,
`stored_candles` and `duplicate_trades` read the history in `Slice`s of about `SLICE_ROWS`
rows: consecutive instruments of one exchange together, a bigger instrument alone in pieces
(of its time for the ordered reads, of its trade ids' hashes for the duplicate count), each
read sorting or grouping no more than that.

Reads never take the writer's lock: each runs on a cursor of its own (MVCC: it sees the last
commit), and inside a read budget a timer interrupts it once the budget is spent. DuckDB's
`memory_limit` holds for the whole database, not per connection, so one limit bounds the
writer and the reads together; a read that hits it fails alone (the API answers 503).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickpipe.faults import DAMAGED_TEXT, store_fault
from tickpipe.records import (
    CANDLE_FIELDS,
    METRIC_FIELDS,
    TRADE_SCHEMA,
    Candle,
    Instrument,
    RollingStat,
    TradeBatch,
    concat_batches,
)
from tickpipe.stores.base import RESTORE_BATCH_ROWS, OverBudget, StoreError, time_range
from tickpipe.stores.budget import MEMORY_REASON, ReadBudget
from tickpipe.stores.flush import Flush
from tickpipe.stores.forecasts import FORECAST_SCHEMA, DuckDBForecasts
from tickpipe.stores.reads import CANDLE_COLUMNS, TRADE_COLUMNS, candles_of
from tickpipe.stores.sql import SqlStore, candle_upsert

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS trade_rows (
    source VARCHAR NOT NULL,
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    raw_symbol VARCHAR NOT NULL,
    trade_id VARCHAR,  -- NULL: the decimal form of seq (most exchanges), not stored twice
    seq BIGINT NOT NULL,
    price DOUBLE NOT NULL,
    size DOUBLE NOT NULL,
    side VARCHAR NOT NULL,
    ts BIGINT NOT NULL,
    recv_ts BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS trade_instruments (
    id INTEGER PRIMARY KEY,
    source VARCHAR NOT NULL,
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    raw_symbol VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS coded_trade_rows (
    instrument INTEGER NOT NULL,  -- trade_instruments.id
    trade_id VARCHAR,  -- NULL: the decimal form of seq
    seq BIGINT NOT NULL,
    price DOUBLE NOT NULL,
    size DOUBLE NOT NULL,
    side TINYINT NOT NULL,  -- 1 buy, -1 sell, 0 unknown (records.SIDE_*)
    ts BIGINT NOT NULL,
    recv_ts BIGINT NOT NULL
);
CREATE OR REPLACE VIEW trades AS
    SELECT source, exchange, symbol, raw_symbol,
           coalesce(trade_id, CAST(seq AS VARCHAR)) AS trade_id,
           seq, price, size, side, ts, recv_ts
    FROM trade_rows
    UNION ALL
    SELECT i.source, i.exchange, i.symbol, i.raw_symbol,
           coalesce(c.trade_id, CAST(c.seq AS VARCHAR)) AS trade_id,
           c.seq, c.price, c.size,
           CASE c.side WHEN 1 THEN 'buy' WHEN -1 THEN 'sell' ELSE 'unknown' END AS side,
           c.ts, c.recv_ts
    FROM coded_trade_rows c JOIN trade_instruments i ON c.instrument = i.id;
CREATE TABLE IF NOT EXISTS candles (
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    interval VARCHAR NOT NULL,
    start BIGINT NOT NULL,
    open DOUBLE NOT NULL,
    high DOUBLE NOT NULL,
    low DOUBLE NOT NULL,
    close DOUBLE NOT NULL,
    volume DOUBLE NOT NULL,
    quote_volume DOUBLE NOT NULL,
    vwap DOUBLE NOT NULL,
    mean_price DOUBLE NOT NULL,
    trades BIGINT NOT NULL,
    buy_volume DOUBLE NOT NULL,
    sell_volume DOUBLE NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    final BOOLEAN NOT NULL,
    revision INTEGER NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (exchange, symbol, interval, start)
);
CREATE TABLE IF NOT EXISTS rolling_stats (
    exchange VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    ts BIGINT NOT NULL,
    avg_close_30m DOUBLE NOT NULL,
    min_price_5m DOUBLE NOT NULL,
    max_price_5m DOUBLE NOT NULL,
    avg_price_5m DOUBLE NOT NULL,
    PRIMARY KEY (exchange, symbol, ts)
);
CREATE TABLE IF NOT EXISTS pipeline_metrics (
    ts BIGINT NOT NULL,
    process VARCHAR NOT NULL,
    period_s DOUBLE NOT NULL,
    trades BIGINT NOT NULL,
    trades_per_s DOUBLE NOT NULL,
    candles BIGINT NOT NULL,
    lag_p50_ms DOUBLE NOT NULL,
    lag_p99_ms DOUBLE NOT NULL,
    queue_depth BIGINT NOT NULL,
    PRIMARY KEY (process, ts)
);
CREATE TABLE IF NOT EXISTS events (
    ts BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    detail VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS engine_snapshot (  -- written with the rows it matches
    part VARCHAR PRIMARY KEY,
    data BLOB NOT NULL
);
"""

CANDLE_UPSERT = candle_upsert("candle_table", in_key_order=False)  # one writer: no sort
_CANDLE_TYPES = {
    "exchange": pa.string(), "symbol": pa.string(), "interval": pa.string(),
    "start": pa.int64(), "trades": pa.int64(), "first_seq": pa.int64(), "last_seq": pa.int64(),
    "final": pa.bool_(), "revision": pa.int32(), "updated_at": pa.int64(),
}  # fmt: skip
CANDLE_SCHEMA = pa.schema([(f, _CANDLE_TYPES.get(f, pa.float64())) for f in CANDLE_FIELDS])
ROLLING_FIELDS = RollingStat.__struct_fields__
ROLLING_SCHEMA = pa.schema(
    [(f, pa.string() if f in ("exchange", "symbol") else pa.int64() if f == "ts" else pa.float64())
     for f in ROLLING_FIELDS]
)  # fmt: skip


# DuckDB keeps C++ state for every row group a database instance has appended (0.25 - 0.65 MB
# per million trades, on the heap, outside `memory_limit`) until the instance closes: at
# 50,000 trades/s that is over 100 MB an hour. The writer reopens the file after this many
# trades, when no read is running, which gives it all back (and empties the block cache).
REOPEN_ROWS = 20_000_000
REOPEN_WAIT_S = 10.0  # how long a reopen waits for another process to let the file go
WRITE_MEMORY_WAIT_S = 30.0  # how long a flush waits for reads to give memory back
# How DuckDB says its memory limit stopped a COMMIT: not as an OutOfMemoryException but as
# "TransactionContext Error: Failed to commit: failed to allocate data of size 512 bytes
# (45.7 MiB/45.7 MiB used)" (the soak test's CI run). A failed commit is rolled back whole.
_OUT_OF_MEMORY_MARKS = ("failed to allocate", "could not allocate", "failed to pin")
# A restart sorts its trades this many at a time: the whole horizon in one sort does not fit
# the running pipeline's memory_limit (4M trades failed at 48MB).
RESTORE_PIECE_ROWS = 100_000
SLICE_ROWS = 1_000_000  # the most rows one read of the history sorts or groups, about


@dataclass
class Slice:
    """Instruments of one exchange read together: `rows` of them with a time in [lo, hi),
    cut into `parts` (more than one: a single instrument bigger than SLICE_ROWS)."""

    exchange: str
    symbols: list[str]
    rows: int
    lo: int
    hi: int
    parts: int = 1

    @property
    def where(self) -> str:
        marks = ", ".join("?" * len(self.symbols))
        return f"exchange = ? AND symbol IN ({marks})"

    @property
    def params(self) -> list:
        return [self.exchange, *self.symbols]

    def times(self) -> list[tuple[int, int]]:
        """[lo, hi) cut into `parts` equal spans of time, in order."""
        cuts = [self.lo + (self.hi - self.lo) * j // self.parts for j in range(self.parts + 1)]
        return list(itertools.pairwise(cuts))


def slices(counts: list[tuple[str, str, int, int, int]]) -> list[Slice]:
    """(exchange, symbol, rows, first time, last time) per instrument as the slices that read
    them, in (exchange, symbol) code-point order."""
    out: list[Slice] = []
    for exchange, symbol, rows, first, last in sorted(counts):
        tail = out[-1] if out else None
        if (
            tail is not None and tail.exchange == exchange and tail.parts == 1
            and tail.rows + rows <= SLICE_ROWS
        ):  # fmt: skip
            tail.symbols.append(symbol)
            tail.rows += rows
            tail.lo, tail.hi = min(tail.lo, first), max(tail.hi, last + 1)
        else:
            out.append(Slice(exchange, [symbol], rows, first, last + 1, -(-rows // SLICE_ROWS)))
    return out


def _structs_to_arrow(structs: list[Candle] | list[RollingStat], schema: pa.Schema) -> pa.Table:
    """The records as one Arrow table of `schema` (its fields in the records' field order)."""
    rows = [msgspec.structs.astuple(s) for s in structs]
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.table(
        [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
        schema=schema,
    )


def _coded_trades(
    batches: list[TradeBatch],
    ids: dict[tuple[str, str, str, str], int],
    new_ids: dict[tuple[str, str, str, str], int],
) -> pa.Table:
    """The trades of `batches` as rows of `coded_trade_rows`. Each instrument's code comes from
    `ids`, or is numbered on into `new_ids` (stored with the rows, and kept only once they are)."""
    codes = []
    next_id = max(ids.values(), default=-1) + 1
    for batch in batches:
        remap = np.empty(len(batch.instruments), np.int32)
        for k, i in enumerate(batch.instruments):
            key = (batch.source, i.exchange, i.symbol, i.raw_symbol)
            code = ids.get(key)
            remap[k] = new_ids.setdefault(key, next_id + len(new_ids)) if code is None else code
        codes.append(remap[batch.instrument])
    trade_ids = [
        pa.nulls(len(b), pa.string()) if b.trade_id is None else pa.array(b.trade_id, pa.string())
        for b in batches
    ]

    def column(name: str, dtype: pa.DataType) -> pa.Array:
        return pa.array(np.concatenate([getattr(b, name) for b in batches]), dtype)

    return pa.table(
        {
            "instrument": pa.array(np.concatenate(codes), pa.int32()),
            "trade_id": pa.concat_arrays(trade_ids),
            "seq": column("seq", pa.int64()),
            "price": column("price", pa.float64()),
            "size": column("size", pa.float64()),
            "side": column("side", pa.int8()),
            "ts": column("ts", pa.int64()),
            "recv_ts": column("recv_ts", pa.int64()),
        }
    )


def _joined(tables: list[pa.Table]) -> pa.Table:
    """One table of the trades given as Arrow tables (a table read from a file or database
    holds plain text, one converted from a batch dictionary-encoded text)."""
    if any(t.schema != tables[0].schema for t in tables):
        tables = [t.cast(TRADE_SCHEMA) for t in tables]
    return pa.concat_tables(tables)


def _out_of_memory(exc: duckdb.Error) -> bool:
    """Whether DuckDB's memory limit stopped a write: a statement's OutOfMemoryException, or
    the same limit met by COMMIT, which DuckDB reports as a TransactionException."""
    return isinstance(exc, duckdb.OutOfMemoryException) or (
        isinstance(exc, duckdb.TransactionException)
        and any(mark in str(exc) for mark in _OUT_OF_MEMORY_MARKS)
    )


class _Interrupter:
    """Interrupts a cursor's query after `after_s`, unless stopped first (under one lock, so
    a cursor handed on to the next read is never interrupted late)."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection, after_s: float) -> None:
        self._cursor = cursor
        self._lock = threading.Lock()
        self._live = True
        self.fired = False
        self._timer = threading.Timer(after_s, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._live:
                self.fired = True
                self._cursor.interrupt()

    def stop(self) -> None:
        with self._lock:
            self._live = False
        self._timer.cancel()


class DuckDBStore(DuckDBForecasts, SqlStore):
    """Reader and writer over one DuckDB file, safe to share between threads: the writer
    holds one connection under a lock; reads take cursors of their own (DuckDB releases the
    GIL while it executes, so they run beside the writer)."""

    def __init__(
        self,
        path: str | Path,
        read_only: bool = False,
        threads: int | None = None,
        memory_limit: str = "128MB",
    ):
        self.path = Path(path)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise StoreError(
                f"no tickpipe data at {self.path} (run `tickpipe demo` or `run` first)"
            )
        try:
            self._con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as exc:
            if any(text in str(exc) for text in DAMAGED_TEXT):
                raise StoreError(store_fault(str(exc), str(self.path))) from exc
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        self._settings = (threads, memory_limit)
        self._configure()
        self._lock = threading.Lock()  # the writer's connection
        self._appended_rows = 0  # trades written since the file was opened
        self.reopens = 0
        self._idle: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        self._cursors: list[duckdb.DuckDBPyConnection] = []  # every read cursor, to close
        self._budget = ReadBudget()
        self.memory_waits = 0  # flushes run again after the memory limit stopped them
        # (source, exchange, symbol, raw_symbol) -> its code in trade_instruments
        self._instrument_ids: dict[tuple[str, str, str, str], int] = {}
        if not read_only:
            self._con.execute(SCHEMA)
            self._con.execute(FORECAST_SCHEMA)
            rows = self._con.execute(
                "SELECT source, exchange, symbol, raw_symbol, id FROM trade_instruments"
            ).fetchall()
            self._instrument_ids = {(a, b, c, d): i for a, b, c, d, i in rows}

    def _configure(self) -> None:
        threads, memory_limit = self._settings
        if threads:
            self._con.execute(f"SET threads = {int(threads)}")
        # DuckDB would otherwise keep written blocks cached up to 80% of the machine's memory;
        # tickpipe's memory must stay bounded, and the file is on disk anyway.
        self._con.execute("SET memory_limit = ?", [memory_limit])

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        with self._lock:
            for cursor in self._cursors:
                cursor.close()
            self._con.close()

    # -- writing -------------------------------------------------------------------------

    def _write(self, flush: Flush) -> None:
        """Trades, candles and rolling statistics as Arrow tables, the rest as rows."""
        # One Arrow conversion per flush, not one per engine step: a live market hands over
        # hundreds of small batches a second, and each conversion holds the GIL.
        batches = [t for t in flush.trades if isinstance(t, TradeBatch) and len(t)]
        tables = [t for t in flush.trades if not isinstance(t, TradeBatch) and t.num_rows]
        new_ids: dict[tuple[str, str, str, str], int] = {}
        coded = _coded_trades(batches, self._instrument_ids, new_ids) if batches else None
        new_instruments = pa.table(
            {
                "id": pa.array(list(new_ids.values()), pa.int32()),
                **{
                    name: pa.array([key[k] for key in new_ids], pa.string())
                    for k, name in enumerate(("source", "exchange", "symbol", "raw_symbol"))
                },
            }
        )
        candle_table = _structs_to_arrow(flush.candles, CANDLE_SCHEMA)
        rolling_table = _structs_to_arrow(flush.rolling, ROLLING_SCHEMA)
        events = flush.events
        metric_rows = [msgspec.structs.astuple(m) for m in flush.metrics]

        def transaction() -> None:  # DuckDB reads the tables above by their names
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                if new_instruments.num_rows:
                    con.execute(
                        "INSERT INTO trade_instruments BY NAME SELECT * FROM new_instruments"
                    )
                if coded is not None:
                    con.execute("INSERT INTO coded_trade_rows SELECT * FROM coded")
                if tables:
                    trade_table = _joined(tables)  # noqa: F841 (read by DuckDB by name)
                    con.execute("INSERT INTO trade_rows SELECT * FROM trade_table")
                if candle_table.num_rows:
                    con.execute(CANDLE_UPSERT)
                if rolling_table.num_rows:
                    con.execute("INSERT OR REPLACE INTO rolling_stats SELECT * FROM rolling_table")
                if events:
                    con.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", events)
                if metric_rows:
                    marks = ", ".join("?" * len(METRIC_FIELDS))
                    con.executemany(
                        f"INSERT OR REPLACE INTO pipeline_metrics VALUES ({marks})", metric_rows
                    )
                for part, data in flush.snapshot.items():
                    con.execute("DELETE FROM engine_snapshot WHERE part = ?", [part])
                    if data is not None:
                        con.execute("INSERT INTO engine_snapshot VALUES (?, ?)", [part, data])
                con.execute("COMMIT")
            except Exception:
                # A failed COMMIT (a full disk) has ended the transaction already; the error
                # to report is the first one, not "no transaction is active".
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise

        self._waiting_for_memory(transaction)
        with self._lock:
            self._instrument_ids.update(new_ids)  # stored now (not after a failed flush)
            self._appended_rows += sum(t.num_rows for t in tables) + sum(map(len, batches))
            if self._appended_rows >= REOPEN_ROWS:
                self._reopen()

    def _waiting_for_memory(self, transaction: Callable[[], None]) -> None:
        """Run `transaction` under the lock; if DuckDB's memory limit stops it, wait and run
        it again. The API's reads share the limit with the writer: they give their memory
        back when they end (bounded by serve.read_timeout), and a flush must not be lost
        to them."""
        pause_s, deadline = 0.05, time.monotonic() + WRITE_MEMORY_WAIT_S
        while True:
            try:
                with self._lock:
                    transaction()
                    return
            except duckdb.Error as exc:
                if not _out_of_memory(exc) or time.monotonic() + pause_s > deadline:
                    raise
                self.memory_waits += 1
                time.sleep(pause_s)
                pause_s = min(2 * pause_s, 1.0)

    def drop_before(
        self, trades_before: int | None, candles_before: dict[str, int]
    ) -> tuple[int, int]:
        """Retention: delete the trades older than `trades_before` (µs) and the candles of
        each interval starting before its cut-off, in one transaction; (trades, candles)
        deleted. The file has no partitions: rows."""
        with self._lock:
            con = self._con
            con.execute("BEGIN")
            try:
                trades = 0
                if trades_before is not None:
                    for table in ("trade_rows", "coded_trade_rows"):
                        row = con.execute(f"DELETE FROM {table} WHERE ts < ?", [trades_before])
                        trades += _count(row.fetchone())
                candles = 0
                for interval, before in candles_before.items():
                    row = con.execute(
                        "DELETE FROM candles WHERE interval = ? AND start < ?", [interval, before]
                    )
                    candles += _count(row.fetchone())
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return trades, candles

    def _reopen(self) -> None:
        """Close and reopen the file (the writer's lock held), if no read holds a cursor:
        closing the last connection is what makes DuckDB free the instance's memory."""
        while True:
            try:
                idle = self._idle.get_nowait()
            except queue.Empty:
                break
            idle.close()
            self._cursors.remove(idle)
        if self._cursors:  # a read is running: try again after the next write
            return
        self._con.close()
        # Another process may open the file in the moment it is closed (`tickpipe verify`
        # would be told the pipeline holds it, but it can win this moment): wait it out.
        deadline = time.monotonic() + REOPEN_WAIT_S
        while True:
            try:
                self._con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as exc:
                if time.monotonic() >= deadline:
                    raise StoreError(
                        f"cannot reopen {self.path}: {str(exc).splitlines()[0]} (another "
                        "process opened the file while tickpipe writes it?)"
                    ) from None
                time.sleep(0.05)
        self._configure()
        self._appended_rows = 0
        self.reopens += 1

    # -- reading -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An idle read cursor, or a new one: a connection of its own to the same database,
        so a read never waits for the writer's lock (MVCC: it sees the last commit)."""
        try:
            cursor = self._idle.get_nowait()
        except queue.Empty:
            with self._lock:
                cursor = self._con.cursor()
                self._cursors.append(cursor)
        try:
            yield cursor
        finally:
            self._idle.put(cursor)

    def _read(self, run: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """`run(cursor)` on a read cursor; inside a read budget, interrupted once it is spent
        (and an out-of-memory error said as the budget it is)."""
        with self._cursor() as cursor:
            left_s = self._budget.remaining_s()
            if left_s is None:
                return run(cursor)
            interrupter = _Interrupter(cursor, left_s)
            try:
                return run(cursor)
            except duckdb.InterruptException:
                if interrupter.fired:
                    raise self._budget.over() from None
                raise
            except duckdb.OutOfMemoryException:
                raise OverBudget(MEMORY_REASON) from None
            finally:
                interrupter.stop()

    def read_budget(self, timeout_s: float) -> AbstractContextManager[None]:
        return self._budget.within(timeout_s)

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        return self._read(lambda cur: cur.execute(sql, params or []).fetchall())

    def query_arrow(self, sql: str, params: list | None = None) -> pa.Table:
        return self._read(lambda cur: cur.sql(sql, params=params or None).to_arrow_table())

    def _rows(self, sql: str, params: list | None = None) -> list[tuple]:
        return self.query(sql, params)

    def _dicts(self, sql: str, params: list | None = None) -> list[dict]:
        return self.query_arrow(sql, params).to_pylist()

    def _stream(self, sql: str, params: list, rows: int) -> Iterator[pa.Table]:
        """An Arrow reader on a cursor of its own (DuckDB: a second connection to the file)."""
        with self._lock:
            cursor = self._con.cursor()
            self._cursors.append(cursor)  # busy until closed: the writer will not reopen
        try:
            for chunk in cursor.sql(sql, params=params or None).to_arrow_reader(rows):
                yield pa.Table.from_batches([chunk])
        finally:
            cursor.close()
            with self._lock:
                self._cursors.remove(cursor)

    # -- whole history, a slice at a time -------------------------------------------------

    def _slices(self, table: str, time: str, lo: int, hi: int, where: str = "",
                params: Sequence[Any] = ()) -> list[Slice]:  # fmt: skip
        """The rows of `table` with `time` in [lo, hi) (and `where`) as slices."""
        counts = self.query(
            f"SELECT exchange, symbol, count(*), min({time}), max({time}) FROM {table} "
            f"WHERE {where}{time} >= ? AND {time} < ? GROUP BY exchange, symbol",
            [*params, lo, hi],
        )
        return slices(counts)

    def trade_batches(
        self, rows: int = RESTORE_BATCH_ROWS, since: int | None = None, until: int | None = None
    ) -> Iterator[TradeBatch]:
        """Every stored trade with ts in [since, until) in batches of at most `rows`, by
        (exchange, symbol) in code-point order, then (ts, seq): a sorted read per slice and
        per piece of its time."""
        for table in self.trade_tables(rows, since, until):
            yield TradeBatch.from_arrow(table, source="store")

    def trade_tables(
        self, rows: int = RESTORE_BATCH_ROWS, since: int | None = None, until: int | None = None
    ) -> Iterator[pa.Table]:
        """`trade_batches` as Arrow tables with every stored column, `source` included (a
        batch has one source; export writes each trade's own)."""
        for piece in self._slices("trades", "ts", *time_range(since, until)):
            for lo, hi in piece.times():
                sql = (
                    f"SELECT {TRADE_COLUMNS} FROM trades WHERE {piece.where} "
                    "AND ts >= ? AND ts < ? ORDER BY symbol, ts, seq"
                )
                yield from self._stream(sql, [*piece.params, lo, hi], rows)

    def stored_candles(
        self, interval: str, rows: int = 100_000, since: int | None = None, until: int | None = None
    ) -> Iterator[Candle]:
        """Every stored candle of `interval` with start in [since, until), by (exchange,
        symbol) in code-point order, then start: a sorted read per slice."""
        lo, hi = time_range(since, until)
        for piece in self._slices("candles", "start", lo, hi, "interval = ? AND ", [interval]):
            for first, end in piece.times():
                sql = (
                    f"SELECT {CANDLE_COLUMNS} FROM candles WHERE interval = ? AND "
                    f"{piece.where} AND start >= ? AND start < ? ORDER BY symbol, start"
                )
                for table in self._stream(sql, [interval, *piece.params, first, end], rows):
                    yield from candles_of(table)

    def duplicate_trades(self, since: int | None = None, until: int | None = None) -> int:
        """How many stored trades with ts in [since, until) repeat an (exchange, symbol,
        trade_id) stored before: grouped per slice, and a big instrument's trades per part
        of the hashes of their ids (the copies of one id fall in one part)."""
        lo, hi = time_range(since, until)
        copies = 0
        for piece in self._slices("trades", "ts", lo, hi):
            for part in range(piece.parts):
                ((n,),) = self.query(
                    "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM trades "
                    f"WHERE {piece.where} AND ts >= ? AND ts < ? AND hash(trade_id) % ? = ? "
                    "GROUP BY symbol, trade_id HAVING count(*) > 1)",
                    [*piece.params, lo, hi, piece.parts, part],
                )
                copies += int(n)
        return copies

    def restore_batches(
        self, cutoff: dict[tuple[str, str], int], rows: int = RESTORE_BATCH_ROWS
    ) -> Iterator[TradeBatch]:
        """The stored trades at or after each instrument's cutoff, in event-time order and in
        batches of at most `rows`, so a restart never holds the whole horizon at once.
        Meant for start-up, before anything writes (it holds the store while it reads).

        Coded trades are read by their instrument code and sorted without a text column (the
        `trades` view would spell out four strings per trade before the sort, which does not
        fit a running pipeline's memory_limit); their instruments are named once per piece."""
        instruments = self._restore_instruments()
        limits = pa.table(
            {
                "exchange": pa.array([k[0] for k in cutoff], pa.string()),
                "symbol": pa.array([k[1] for k in cutoff], pa.string()),
                "cutoff": pa.array(list(cutoff.values()), pa.int64()),
            }
        )
        codes = pa.table(
            {
                "id": pa.array([c for c, (key, _) in enumerate(instruments) if key in cutoff],
                               pa.int32()),
                "cutoff": pa.array([cutoff[key] for key, _ in instruments if key in cutoff],
                                   pa.int64()),
            }
        )  # fmt: skip
        texts = (
            "FROM trade_rows t JOIN restore_limits l USING (exchange, symbol) "
            "WHERE t.ts >= l.cutoff"
        )
        coded = (
            "FROM coded_trade_rows t JOIN restore_codes l ON t.instrument = l.id "
            "WHERE t.ts >= l.cutoff"
        )
        with self._lock:
            self._con.register("restore_limits", limits)
            self._con.register("restore_codes", codes)
            try:
                seconds = self._con.execute(
                    "SELECT s, sum(n) FROM ("
                    f"SELECT t.ts // 1000000 AS s, count(*) AS n {texts} GROUP BY s UNION ALL "
                    f"SELECT t.ts // 1000000 AS s, count(*) AS n {coded} GROUP BY s"
                    ") GROUP BY s ORDER BY s"
                ).fetchall()
                span = "AND t.ts >= $lo AND t.ts < $hi ORDER BY t.ts"
                for lo, hi in _pieces(seconds, RESTORE_PIECE_ROWS):
                    params = {"lo": lo * 1_000_000, "hi": hi * 1_000_000}
                    text_sql = (
                        "SELECT t.exchange, t.symbol, t.raw_symbol, t.seq, t.price, t.size, "
                        "coalesce(t.trade_id, CAST(t.seq AS VARCHAR)) AS trade_id, t.side, t.ts, "
                        f"t.recv_ts {texts} {span}"
                    )
                    coded_sql = f"SELECT t.* {coded} {span}"
                    both = [  # one read after the other: a connection holds one open result
                        TradeBatch.from_arrow(
                            self._con.sql(text_sql, params=params).to_arrow_table(), "restore"
                        ),
                        _decoded(
                            self._con.sql(coded_sql, params=params).to_arrow_table(), instruments
                        ),
                    ]
                    piece = concat_batches(both, source="restore")
                    if all(map(len, both)):  # each part is in ts order, the two together not
                        piece = piece.take(np.argsort(piece.ts, kind="stable"))
                    for first in range(0, len(piece), rows):
                        yield piece.take(slice(first, first + rows))
            finally:
                self._con.unregister("restore_limits")
                self._con.unregister("restore_codes")

    def _restore_instruments(self) -> list[tuple[tuple[str, str], Instrument]]:
        """Every coded instrument by its code: its (exchange, symbol) and itself."""
        rows = self._con.execute(
            "SELECT id, exchange, symbol, raw_symbol FROM trade_instruments ORDER BY id"
        ).fetchall()
        named: list[tuple[tuple[str, str], Instrument]] = []
        for code, exchange, symbol, raw_symbol in rows:
            if code != len(named):
                raise StoreError(f"{DAMAGED_TEXT}: instrument codes are not numbered from 0")
            named.append(((exchange, symbol), Instrument(exchange, symbol, raw_symbol)))
        return named


def _decoded(table: pa.Table, instruments: list[tuple[tuple[str, str], Instrument]]) -> TradeBatch:
    """A batch of `coded_trade_rows` rows, each instrument named by its code."""
    trade_id = table.column("trade_id")
    return TradeBatch(
        source="restore",
        instruments=[instrument for _, instrument in instruments],
        instrument=table.column("instrument").to_numpy().astype(np.int32),
        seq=table.column("seq").to_numpy().astype(np.int64),
        price=table.column("price").to_numpy().astype(np.float64),
        size=table.column("size").to_numpy().astype(np.float64),
        side=table.column("side").to_numpy().astype(np.int8),
        ts=table.column("ts").to_numpy().astype(np.int64),
        recv_ts=table.column("recv_ts").to_numpy().astype(np.int64),
        trade_id=None if trade_id.null_count == len(trade_id) else _spelled_out(table),
    )


def _spelled_out(table: pa.Table) -> np.ndarray:
    """The trade ids of coded rows, a NULL spelled out as the decimal form of its seq."""
    ids = table.column("trade_id")
    return np.array(
        pc.if_else(pc.is_null(ids), pc.cast(table.column("seq"), pa.string()), ids).to_pylist(),
        object,
    )


def _pieces(counts: list[tuple[int, int]], rows: int) -> list[tuple[int, int]]:
    """Consecutive spans [lo, hi) of the (second, trade count) rows, each of about `rows`
    trades (one busy second may hold more): a restore sorts one span at a time, so its memory
    does not grow with the correction horizon."""
    spans: list[tuple[int, int]] = []
    lo, held = None, 0
    for second, n in counts:
        if lo is None:
            lo = second
        held += n
        if held >= rows:
            spans.append((lo, second + 1))
            lo, held = None, 0
    if lo is not None:
        spans.append((lo, counts[-1][0] + 1))
    return spans


def _count(row: tuple | None) -> int:
    """The row count a DuckDB DELETE answers with."""
    return int(row[0]) if row else 0
