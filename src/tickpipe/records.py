"""The records that flow through tickpipe, defined once.

Row records (`Trade`, `Candle`, `Gap`, `Disconnect`, `RollingStat`) are msgspec Structs for
APIs, files and tests. The hot path moves trades as a columnar `TradeBatch` so that decoding,
aggregation and storage work on whole arrays instead of one Python object per trade.

Times are integer microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SIDE_BUY = 1
SIDE_SELL = -1
SIDE_UNKNOWN = 0
SIDE_NAMES = {SIDE_BUY: "buy", SIDE_SELL: "sell", SIDE_UNKNOWN: "unknown"}
SIDE_CODES = {name: code for code, name in SIDE_NAMES.items()}


class Instrument(msgspec.Struct, frozen=True, gc=False):
    """Where a trade happened: the venue and the normalized symbol (`BASE-QUOTE`)."""

    exchange: str
    symbol: str
    raw_symbol: str = ""


class Trade(msgspec.Struct, kw_only=True):
    """One trade. `source` is the feed it came through, `exchange` the venue it traded on."""

    source: str
    exchange: str
    symbol: str
    trade_id: str
    seq: int
    price: float
    size: float
    side: str = "unknown"
    ts: int
    recv_ts: int
    raw_symbol: str = ""


class Candle(msgspec.Struct, kw_only=True):
    """An OHLCV candle of one window. `interval` is a window name such as `1m` or `1m/5s`."""

    exchange: str
    symbol: str
    interval: str
    start: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    vwap: float
    mean_price: float
    trades: int
    buy_volume: float
    sell_volume: float
    first_seq: int
    last_seq: int
    final: bool
    revision: int
    updated_at: int


CANDLE_FIELDS: tuple[str, ...] = Candle.__struct_fields__


class RollingStat(msgspec.Struct, kw_only=True):
    """Rolling statistics of one symbol as of `ts`, the end of the 1-minute candle that closed."""

    exchange: str
    symbol: str
    ts: int
    avg_close_30m: float
    min_price_5m: float
    max_price_5m: float
    avg_price_5m: float


class PipelineMetric(msgspec.Struct, kw_only=True):
    """The pipeline's own KPIs over one period ending at `ts` (µs), as one process saw them.

    Kept in the store every few seconds (table `pipeline_metrics`, keyed (process, ts)) so the
    dashboard and Grafana can draw throughput, lag and data volume over time.
    """

    ts: int
    process: str  # "embedded", or e.g. "process-<host>-<pid>" in the distributed mode
    period_s: float
    trades: int  # trades stored during the period
    trades_per_s: float
    candles: int  # candle updates written during the period
    lag_p50_ms: float  # event time to stored, over the period's trades
    lag_p99_ms: float
    queue_depth: int


METRIC_FIELDS: tuple[str, ...] = PipelineMetric.__struct_fields__


class Gap(msgspec.Struct, kw_only=True, tag=True):
    """A source lost trades between `first_missing` and `last_missing` (sequence numbers)."""

    source: str
    exchange: str
    symbol: str
    first_missing: int
    last_missing: int
    ts: int
    recovered: int = 0
    detail: str = ""


class Disconnect(msgspec.Struct, kw_only=True, tag=True):
    """A source's connection dropped; `reconnect_in` is the backoff before the next attempt (s)."""

    source: str
    ts: int
    reason: str
    reconnect_in: float = 0.0


TRADE_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("exchange", pa.string()),
        ("symbol", pa.string()),
        ("raw_symbol", pa.string()),
        ("trade_id", pa.string()),
        ("seq", pa.int64()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("side", pa.string()),
        ("ts", pa.int64()),
        ("recv_ts", pa.int64()),
    ]
)

_SIDE_VALUES = ["sell", "unknown", "buy"]  # indexed by side code + 1


@dataclass(slots=True)
class TradeBatch:
    """Trades of one source as columns.

    `instrument` indexes `instruments`. `trade_id` is None when every trade id is the decimal
    form of `seq` (exchanges with numeric ids), which spares one Python string per trade.
    """

    source: str
    instruments: list[Instrument]
    instrument: np.ndarray  # int32
    seq: np.ndarray  # int64
    price: np.ndarray  # float64
    size: np.ndarray  # float64
    side: np.ndarray  # int8: SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN
    ts: np.ndarray  # int64 microseconds
    recv_ts: np.ndarray  # int64 microseconds
    trade_id: np.ndarray | None = None  # object array of str

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def empty(cls, source: str) -> TradeBatch:
        return cls(
            source=source,
            instruments=[],
            instrument=np.empty(0, np.int32),
            seq=np.empty(0, np.int64),
            price=np.empty(0, np.float64),
            size=np.empty(0, np.float64),
            side=np.empty(0, np.int8),
            ts=np.empty(0, np.int64),
            recv_ts=np.empty(0, np.int64),
        )

    @classmethod
    def from_trades(cls, trades: Sequence[Trade], source: str | None = None) -> TradeBatch:
        """Build a batch from row records (tests, replay, REST backfill)."""
        if not trades:
            return cls.empty(source or "")
        index: dict[Instrument, int] = {}
        codes = [
            index.setdefault(Instrument(t.exchange, t.symbol, t.raw_symbol), len(index))
            for t in trades
        ]
        return cls(
            source=source or trades[0].source,
            instruments=list(index),
            instrument=np.array(codes, np.int32),
            seq=np.array([t.seq for t in trades], np.int64),
            price=np.array([t.price for t in trades], np.float64),
            size=np.array([t.size for t in trades], np.float64),
            side=np.array([SIDE_CODES.get(t.side, SIDE_UNKNOWN) for t in trades], np.int8),
            ts=np.array([t.ts for t in trades], np.int64),
            recv_ts=np.array([t.recv_ts for t in trades], np.int64),
            trade_id=np.array([t.trade_id for t in trades], object),
        )

    @classmethod
    def from_arrow(cls, table: pa.Table, source: str = "") -> TradeBatch:
        """A batch from a table with `TRADE_SCHEMA` columns (stored trades, files).

        Column-wise throughout: a restart may reload millions of stored trades.
        """
        if not table.num_rows:
            return cls.empty(source)
        key = (
            pc.binary_join_element_wise(
                table.column("exchange"), table.column("symbol"), table.column("raw_symbol"), "\x1f"
            )
            .combine_chunks()
            .dictionary_encode()
        )
        instruments = [Instrument(*k.split("\x1f")) for k in key.dictionary.to_pylist()]
        seq = table.column("seq").to_numpy().astype(np.int64)
        trade_id = table.column("trade_id")
        numeric = pc.all(pc.equal(trade_id, pc.cast(table.column("seq"), pa.string()))).as_py()
        side = pc.index_in(table.column("side"), value_set=pa.array(_SIDE_VALUES))
        return cls(
            source=source,
            instruments=instruments,
            instrument=key.indices.to_numpy().astype(np.int32),
            seq=seq,
            price=table.column("price").to_numpy().astype(np.float64),
            size=table.column("size").to_numpy().astype(np.float64),
            side=(pc.fill_null(side, 1).to_numpy() - 1).astype(np.int8),
            ts=table.column("ts").to_numpy().astype(np.int64),
            recv_ts=table.column("recv_ts").to_numpy().astype(np.int64),
            trade_id=None if numeric else np.array(trade_id.to_pylist(), object),
        )

    def trade_ids(self) -> np.ndarray:
        """Trade ids as an object array of str, derived from `seq` when not given."""
        if self.trade_id is not None:
            return self.trade_id
        return np.array(self.seq.astype(str), object)

    def take(self, index: np.ndarray | slice) -> TradeBatch:
        """The trades at `index` (an index array, a boolean mask or a slice), sharing
        `instruments`."""
        return TradeBatch(
            source=self.source,
            instruments=self.instruments,
            instrument=self.instrument[index],
            seq=self.seq[index],
            price=self.price[index],
            size=self.size[index],
            side=self.side[index],
            ts=self.ts[index],
            recv_ts=self.recv_ts[index],
            trade_id=None if self.trade_id is None else self.trade_id[index],
        )

    def to_trades(self) -> list[Trade]:
        """Row records, for tests, dead letters and the API."""
        ids = self.trade_ids()
        out = []
        for i in range(len(self)):
            inst = self.instruments[self.instrument[i]]
            out.append(
                Trade(
                    source=self.source,
                    exchange=inst.exchange,
                    symbol=inst.symbol,
                    raw_symbol=inst.raw_symbol,
                    trade_id=str(ids[i]),
                    seq=int(self.seq[i]),
                    price=float(self.price[i]),
                    size=float(self.size[i]),
                    side=SIDE_NAMES[int(self.side[i])],
                    ts=int(self.ts[i]),
                    recv_ts=int(self.recv_ts[i]),
                )
            )
        return out

    def to_arrow(self, numeric_ids_as_null: bool = False) -> pa.Table:
        """The batch as an Arrow table with `TRADE_SCHEMA`'s columns, built without Python loops.

        Text columns stay dictionary-encoded (one string per instrument, not per trade): the
        store reads them as text, a third faster than from plain string columns. With
        `numeric_ids_as_null`, ids that are `str(seq)` are left null (the store's compact form).
        """
        codes = pa.array(self.instrument, pa.int32())

        def text(values: list[str], indices: pa.Array = codes) -> pa.DictionaryArray:
            return pa.DictionaryArray.from_arrays(indices, pa.array(values, pa.string()))

        if self.trade_id is None and numeric_ids_as_null:
            trade_id = pa.nulls(len(self), pa.string())
        elif self.trade_id is None:
            trade_id = pa.array(self.seq, pa.int64()).cast(pa.string())
        else:
            trade_id = pa.array(self.trade_id, pa.string())
        columns = [
            text([self.source], pa.array(np.zeros(len(self), np.int32))),
            text([i.exchange for i in self.instruments]),
            text([i.symbol for i in self.instruments]),
            text([i.raw_symbol for i in self.instruments]),
            trade_id,
            pa.array(self.seq, pa.int64()),
            pa.array(self.price, pa.float64()),
            pa.array(self.size, pa.float64()),
            text(_SIDE_VALUES, pa.array(self.side.astype(np.int32) + 1, pa.int32())),
            pa.array(self.ts, pa.int64()),
            pa.array(self.recv_ts, pa.int64()),
        ]
        return pa.table(columns, names=TRADE_SCHEMA.names)


def concat_batches(batches: Iterable[TradeBatch], source: str = "") -> TradeBatch:
    """One batch from several, re-coding instruments into one shared list."""
    batches = [b for b in batches if len(b)]
    if not batches:
        return TradeBatch.empty(source)
    if len(batches) == 1:
        return batches[0]
    instruments = batches[0].instruments
    if all(b.instruments is instruments for b in batches):
        codes = [b.instrument for b in batches]  # one source's batches share its list
    else:
        index: dict[Instrument, int] = {}
        codes = []
        for b in batches:
            remap = np.array([index.setdefault(i, len(index)) for i in b.instruments], np.int32)
            codes.append(remap[b.instrument])
        instruments = list(index)
    any_ids = any(b.trade_id is not None for b in batches)
    return TradeBatch(
        source=batches[0].source,
        instruments=instruments,
        instrument=np.concatenate(codes),
        seq=np.concatenate([b.seq for b in batches]),
        price=np.concatenate([b.price for b in batches]),
        size=np.concatenate([b.size for b in batches]),
        side=np.concatenate([b.side for b in batches]),
        ts=np.concatenate([b.ts for b in batches]),
        recv_ts=np.concatenate([b.recv_ts for b in batches]),
        trade_id=np.concatenate([b.trade_ids() for b in batches]) if any_ids else None,
    )
