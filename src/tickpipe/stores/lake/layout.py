"""The lake's files: partitioning, rolling, complete-only writes, and reading keys back.

See the package docstring for the layout and the rule that nothing is written twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pyarrow import fs

from tickpipe.records import CANDLE_FIELDS, TRADE_SCHEMA, Candle, TradeBatch
from tickpipe.stores.base import StoreError
from tickpipe.stores.lake.location import LakeSettings

log = logging.getLogger("tickpipe")

DAY_US = 86_400_000_000
_LAST_US = 253_402_214_400_000_000 - 1  # the last microsecond of the year 9999
TRADES, CANDLES = "trades", "candles"
PARTITION_KEYS = ("exchange", "symbol")  # in the path, not in the files (as Spark writes them)
TRADE_FILE_SCHEMA = pa.schema([f for f in TRADE_SCHEMA if f.name not in PARTITION_KEYS])
_CANDLE_TYPES = {"interval": pa.string(), "final": pa.bool_()}
_CANDLE_INTS = {"start", "trades", "first_seq", "last_seq", "revision", "updated_at"}
CANDLE_FILE_SCHEMA = pa.schema(
    [
        (name, _CANDLE_TYPES.get(name, pa.int64() if name in _CANDLE_INTS else pa.float64()))
        for name in CANDLE_FIELDS
        if name not in PARTITION_KEYS
    ]
)
SCHEMAS = {TRADES: TRADE_FILE_SCHEMA, CANDLES: CANDLE_FILE_SCHEMA}
TIME_COLUMN = {TRADES: "ts", CANDLES: "start"}
SORT_KEYS = {TRADES: ("ts", "seq", "trade_id"), CANDLES: ("start", "interval")}
DIGEST_KEYS = {TRADES: ("trade_id",), CANDLES: ("interval", "start", "revision")}

Partition = tuple[str, str, str, str]  # (kind, exchange, symbol, date)


def day_of(us: int) -> str:
    """The `date=` partition value of a time in microseconds (UTC)."""
    us = min(max(us, 0), _LAST_US)
    return datetime.fromtimestamp(us // DAY_US * 86_400, UTC).strftime("%Y-%m-%d")


def file_name(table: pa.Table, kind: str) -> str:
    """The name a file's content gives it: its time range and a digest of its keys, so the same
    rows written again replace the file instead of adding one."""
    times = table.column(TIME_COLUMN[kind])
    digest = hashlib.blake2b(digest_size=8)
    for name in DIGEST_KEYS[kind]:
        digest.update("\x1f".join(map(str, table.column(name).to_pylist())).encode())
    return f"part-{pc.min(times).as_py()}-{pc.max(times).as_py()}-{digest.hexdigest()}.parquet"


def max_time_of(name: str) -> int | None:
    """The newest time a file holds, from its name (None for anything not a lake file)."""
    parts = name.split("-")
    if len(parts) != 4 or parts[0] != "part" or not name.endswith(".parquet"):
        return None
    try:
        return int(parts[2])
    except ValueError:
        return None


@dataclass
class _Buffer:
    tables: list[pa.Table] = field(default_factory=list)
    nbytes: int = 0
    since_s: float = 0.0


class Lake:
    """Trades and final candles into Parquet files; the keys already there read back.

    Not thread-safe: the live path drives it from `LakeWriter`'s thread, export and catch-up
    from their own (before the live path starts).
    """

    def __init__(self, filesystem: fs.FileSystem, root: str, settings: LakeSettings) -> None:
        self.fs = filesystem
        self.root = root
        self.settings = settings
        self.local = isinstance(filesystem, fs.LocalFileSystem)
        self.files_written = 0
        self.bytes_written = 0
        self.rows_written = {TRADES: 0, CANDLES: 0}
        self._buffers: dict[Partition, _Buffer] = {}

    def describe(self) -> str:
        """Where the lake is (its URL holds no credentials: they come from the environment)."""
        return f"Parquet lake {self.settings.url}"

    # -- writing -------------------------------------------------------------------------

    def add_trades(self, batch: TradeBatch, now_s: float | None = None) -> None:
        """Buffer a batch's trades in their partitions (written by `roll`)."""
        if not len(batch):
            return
        table = batch.to_arrow()
        days = batch.ts // DAY_US
        group = batch.instrument.astype(np.int64) * 10_000_000 + days
        keys, inverse = np.unique(group, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(inverse))))
        files = table.drop_columns(list(PARTITION_KEYS)).cast(TRADE_FILE_SCHEMA)
        for k, key in enumerate(keys):
            inst = batch.instruments[int(key // 10_000_000)]
            rows = files.take(pa.array(order[bounds[k] : bounds[k + 1]]))
            part = (TRADES, inst.exchange, inst.symbol, day_of(int(key % 10_000_000) * DAY_US))
            self._buffer(part, rows, now_s)

    def add_candles(self, candles: Iterable[Candle], now_s: float | None = None) -> None:
        """Buffer final candles in their partitions; provisional ones are not the lake's."""
        by_part: dict[Partition, list[Candle]] = {}
        for c in candles:
            if c.final:
                part = (CANDLES, c.exchange, c.symbol, day_of(c.start))
                by_part.setdefault(part, []).append(c)
        names = CANDLE_FILE_SCHEMA.names
        for part, rows in by_part.items():
            columns = {n: [getattr(c, n) for c in rows] for n in names}
            self._buffer(part, pa.table(columns, schema=CANDLE_FILE_SCHEMA), now_s)

    def _buffer(self, part: Partition, table: pa.Table, now_s: float | None) -> None:
        buf = self._buffers.get(part)
        if buf is None:
            buf = self._buffers[part] = _Buffer(
                since_s=time.monotonic() if now_s is None else now_s
            )
        buf.tables.append(table)
        buf.nbytes += table.nbytes
        if buf.nbytes >= self.settings.roll_bytes:
            self._write(part, self._buffers.pop(part))

    @property
    def buffered_rows(self) -> int:
        return sum(t.num_rows for b in self._buffers.values() for t in b.tables)

    def roll(self, now_s: float | None = None) -> int:
        """Write every partition whose oldest row waited `roll_every`; how many files."""
        now_s = time.monotonic() if now_s is None else now_s
        due = [
            p for p, b in self._buffers.items() if now_s - b.since_s >= self.settings.roll_every_s
        ]
        for part in due:
            self._write(part, self._buffers.pop(part))
        return len(due)

    def flush(self) -> None:
        """Write every buffered row now (at shutdown, and at the end of an export)."""
        while self._buffers:
            part = next(iter(self._buffers))
            self._write(part, self._buffers.pop(part))

    def _write(self, part: Partition, buf: _Buffer) -> None:
        kind, exchange, symbol, date = part
        table = pa.concat_tables(buf.tables).sort_by([(k, "ascending") for k in SORT_KEYS[kind]])
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        data = sink.getvalue()
        folder = f"{self.root}/{kind}/exchange={exchange}/symbol={symbol}/date={date}"
        self._put(folder, file_name(table, kind), data)
        self.files_written += 1
        self.bytes_written += data.size
        self.rows_written[kind] += table.num_rows

    def replace_files(self, folder: str, table: pa.Table, kind: str) -> None:
        """Make `table` the only file of partition `folder` (retention's rewrite): the new
        file appears complete first, then the others go: a reader in between may see the kept
        rows twice for a moment, never without them."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="zstd")
        name = file_name(table, kind)
        self._put(folder, name, sink.getvalue())
        with self.reading():
            for info in self.list(folder):
                if info.type == fs.FileType.File and info.base_name != name:
                    self.fs.delete_file(info.path)

    def _put(self, folder: str, name: str, data: pa.Buffer) -> None:
        """Make `folder/name` appear complete or not at all, retrying a lost server for
        `retry_for_s` (nothing is dropped before that)."""
        deadline = time.monotonic() + self.settings.retry_for_s
        said = False
        while True:
            try:
                if self.local:
                    # A hidden temporary name every reader skips, then an atomic rename.
                    self.fs.create_dir(folder, recursive=True)
                    temp = f"{folder}/.{name}.tmp"
                    with self.fs.open_output_stream(temp) as out:
                        out.write(data)
                    self.fs.move(temp, f"{folder}/{name}")
                else:
                    # One upload: S3 shows the object only once it is complete.
                    with self.fs.open_output_stream(f"{folder}/{name}") as out:
                        out.write(data)
                if said:
                    log.warning("lake %s reachable again", self.settings.url)
                return
            except OSError as exc:
                if time.monotonic() >= deadline:
                    raise StoreError(f"lake {self.settings.url}: cannot write: {exc}") from exc
                if not said:
                    log.warning("lake %s unreachable, retrying: %s", self.settings.url, exc)
                    said = True
                time.sleep(1.0)

    # -- reading -------------------------------------------------------------------------

    def path(self, kind: str, exchange: str | None = None, symbol: str | None = None) -> str:
        path = f"{self.root}/{kind}"
        if exchange is not None:
            path += f"/exchange={exchange}"
            if symbol is not None:
                path += f"/symbol={symbol}"
        return path

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """A read the server cannot answer becomes one line (`StoreError`), not a traceback."""
        try:
            yield
        except OSError as exc:
            line = " ".join(str(exc).split())
            raise StoreError(f"lake {self.settings.url}: cannot read: {line}") from exc

    def dataset(
        self, kind: str, exchange: str | None = None, symbol: str | None = None
    ) -> ds.Dataset | None:
        """The lake's files of one kind (of one exchange or instrument) as a pyarrow dataset,
        its partition columns strings; None while there are none."""
        path = self.path(kind, exchange, symbol)
        with self.reading():
            if self.fs.get_file_info(path).type == fs.FileType.NotFound:
                return None
            return self._dataset(kind, path, exchange, symbol)

    def _dataset(
        self, kind: str, path: str, exchange: str | None, symbol: str | None
    ) -> ds.Dataset:
        keys = ["exchange", "symbol", "date"][(exchange is not None) + (symbol is not None) :]
        partitioning = ds.partitioning(pa.schema([(k, pa.string()) for k in keys]), flavor="hive")
        return ds.dataset(
            path, filesystem=self.fs, format="parquet", partitioning=partitioning,
            schema=pa.schema([*SCHEMAS[kind], *((k, pa.string()) for k in keys)]),
        )  # fmt: skip

    def newest_ts(self, exchange: str, symbol: str) -> int | None:
        """The newest trade time of an instrument in the lake, from the names of the files in
        its newest day folders (no file is opened)."""
        path = self.path(TRADES, exchange, symbol)
        for day in reversed(self.partitions(path, "date")):
            times = [max_time_of(f.base_name) for f in self.list(f"{path}/date={day}")]
            found = [t for t in times if t is not None]
            if found:
                return max(found)
        return None

    def partitions(self, path: str, key: str) -> list[str]:
        """The values of the Hive partition `key` (folders `key=value`) directly under `path`,
        sorted."""
        prefix = f"{key}="
        return sorted(
            f.base_name.removeprefix(prefix)
            for f in self.list(path)
            if f.type == fs.FileType.Directory and f.base_name.startswith(prefix)
        )

    def list(self, path: str) -> list[fs.FileInfo]:
        """What is directly under `path` (nothing if it does not exist)."""
        with self.reading():
            return self.fs.get_file_info(fs.FileSelector(path, allow_not_found=True))

    def keys(
        self, kind: str, exchange: str, symbol: str, since: int, until: int
    ) -> set[tuple[str, int, int]] | set[str]:
        """The keys the lake holds for an instrument with time in [since, until): trade ids,
        or (interval, start, revision) of candles. Only that range's day folders are read."""
        dataset = self.dataset(kind, exchange, symbol)
        if dataset is None:
            return set()
        column = ds.field(TIME_COLUMN[kind])
        where = (
            (ds.field("date") >= day_of(since)) & (ds.field("date") <= day_of(until - 1))
            & (column >= since) & (column < until)
        )  # fmt: skip
        with self.reading():
            if kind == TRADES:
                ids = dataset.to_table(columns=["trade_id"], filter=where).column("trade_id")
                return set(ids.to_pylist())
            table = dataset.to_table(columns=["interval", "start", "revision"], filter=where)
        return set(zip(*table.to_pydict().values(), strict=True))
