"""What one `write` hands a store: every store's writes start from a `Flush`.

Only the last update per key of candles, rolling statistics and KPIs is kept: an upsert may
not touch a row twice in one statement, and a bulk write of a key twice is wasted work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tickpipe.records import (
    TRADE_SCHEMA,
    Candle,
    PipelineMetric,
    RollingStat,
    TradeBatch,
    concat_batches,
)

TRADE_FIELDS = tuple(TRADE_SCHEMA.names)


@dataclass(frozen=True)
class StreamOffsets:
    """The consumed position of a Kafka consumer group, stored in the same transaction as the
    rows those messages produced (a store that keeps them: `stores/base.py`, OffsetStore):
    per partition, the next offset to consume and its replay point as commit metadata."""

    group: str
    topic: str
    positions: dict[int, tuple[int, str]]


@dataclass(frozen=True)
class Flush:
    """One write: trades to append, and the latest version of each row to upsert."""

    trades: list[TradeBatch | pa.Table]
    candles: list[Candle]
    rolling: list[RollingStat]
    events: list[tuple[int, str, str, str]]
    metrics: list[PipelineMetric]
    # Parts of the engine snapshot to store with the rows (`stores/base.py`, SnapshotStore):
    # name -> blob, None deleting the part.
    snapshot: dict[str, bytes | None] = field(default_factory=dict)
    offsets: StreamOffsets | None = None

    @classmethod
    def of(
        cls,
        trades: Iterable[TradeBatch | pa.Table] = (),
        candles: Iterable[Candle] = (),
        rolling: Iterable[RollingStat] = (),
        events: Iterable[tuple[int, str, str, str]] = (),
        metrics: Iterable[PipelineMetric] = (),
        snapshot: dict[str, bytes | None] | None = None,
        offsets: StreamOffsets | None = None,
    ) -> Flush:
        """The flush of one `write` call, the last update per key kept."""
        last_candles = {(c.exchange, c.symbol, c.interval, c.start): c for c in candles}
        last_rolling = {(s.exchange, s.symbol, s.ts): s for s in rolling}
        last_metrics = {(m.process, m.ts): m for m in metrics}
        return cls(
            list(trades),
            list(last_candles.values()),
            list(last_rolling.values()),
            list(events),
            list(last_metrics.values()),
            dict(snapshot or {}),
            offsets,
        )


_SIDES = np.array(["sell", "unknown", "buy"], object)  # indexed by side code + 1


def trade_columns(trades: Iterable[TradeBatch | pa.Table]) -> list[list[Any]]:
    """The trades as one Python list per column in `TRADE_SCHEMA` order ([] when none): the
    rows a store that takes Python values (PostgreSQL's COPY, Cassandra, MongoDB) sends.

    Built with numpy from the batch's columns: text values are looked up per instrument and
    side code, not converted per trade (Arrow's to_pylist costs ten times as much here).
    """
    batches: list[TradeBatch] = []
    sources: list[np.ndarray] = []
    for t in trades:
        if isinstance(t, TradeBatch):
            batches.append(t)
            sources.append(np.full(len(t), t.source, object))
        elif t.num_rows:  # a table's own source column, looked up per distinct value
            t = t.select(TRADE_FIELDS).cast(TRADE_SCHEMA)  # dictionary-encoded text too
            batches.append(TradeBatch.from_arrow(t))
            codes = pc.dictionary_encode(t.column("source")).combine_chunks()
            sources.append(np.array(codes.dictionary.to_pylist(), object)[codes.indices])
    if not any(len(b) for b in batches):
        return []
    batch = concat_batches(batches)
    instruments = batch.instruments
    pick = batch.instrument

    def text(values: list[str]) -> list[str]:
        return np.array(values, object)[pick].tolist()

    return [
        np.concatenate(sources).tolist(),
        text([i.exchange for i in instruments]),
        text([i.symbol for i in instruments]),
        text([i.raw_symbol for i in instruments]),
        batch.trade_ids().tolist(),
        batch.seq.tolist(),
        batch.price.tolist(),
        batch.size.tolist(),
        _SIDES[batch.side.astype(np.int64) + 1].tolist(),
        batch.ts.tolist(),
        batch.recv_ts.tolist(),
    ]
