"""The base of both SQL stores: the shared reads (`reads.py`) and the front of every write.

`write` turns what the pipeline hands over into one `Flush`, keeping only the last update per
key of candles, rolling statistics and KPIs (an upsert may not touch a row twice in one
statement), and hands it to the store's own bulk path (`_write`: DuckDB's Arrow inserts,
PostgreSQL's binary COPY), which stores it in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from tickpipe.records import Candle, PipelineMetric, RollingStat, TradeBatch
from tickpipe.stores.reads import SqlReads


@dataclass(frozen=True)
class Flush:
    """One write: trades to append, and the latest version of each row to upsert."""

    trades: list[TradeBatch | pa.Table]
    candles: list[Candle]
    rolling: list[RollingStat]
    events: list[tuple[int, str, str, str]]
    metrics: list[PipelineMetric]

    @classmethod
    def of(
        cls,
        trades: Iterable[TradeBatch | pa.Table],
        candles: Iterable[Candle],
        rolling: Iterable[RollingStat],
        events: Iterable[tuple[int, str, str, str]],
        metrics: Iterable[PipelineMetric],
    ) -> Flush:
        """What `write` was handed, keeping only the last update per key of candles, rolling
        statistics and KPIs (a store may not touch one row twice in one write)."""
        return cls(
            trades=list(trades),
            candles=list({(c.exchange, c.symbol, c.interval, c.start): c for c in candles}
                         .values()),
            rolling=list({(s.exchange, s.symbol, s.ts): s for s in rolling}.values()),
            events=list(events),
            metrics=list({(m.process, m.ts): m for m in metrics}.values()),
        )  # fmt: skip


class SqlStore(SqlReads):
    """A store over SQL: the store provides `_write` (and `_rows`, `_dicts` for the reads)."""

    def write(
        self,
        trades: Iterable[TradeBatch | pa.Table] = (),
        candles: Iterable[Candle] = (),
        rolling: Iterable[RollingStat] = (),
        events: Iterable[tuple[int, str, str, str]] = (),
        metrics: Iterable[PipelineMetric] = (),
    ) -> None:
        """Store one flush in one transaction: trades appended, candles, rolling statistics
        and KPIs upserted (the last update per key wins), events stored."""
        self._write(Flush.of(trades, candles, rolling, events, metrics))

    def _write(self, flush: Flush) -> None:
        raise NotImplementedError
