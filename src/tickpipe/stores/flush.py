"""What one `write` hands a store: every store's writes start from a `Flush`.

Only the last update per key of candles, rolling statistics and KPIs is kept: an upsert may
not touch a row twice in one statement, and a bulk write of a key twice is wasted work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from tickpipe.records import Candle, PipelineMetric, RollingStat, TradeBatch


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
        trades: Iterable[TradeBatch | pa.Table] = (),
        candles: Iterable[Candle] = (),
        rolling: Iterable[RollingStat] = (),
        events: Iterable[tuple[int, str, str, str]] = (),
        metrics: Iterable[PipelineMetric] = (),
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
        )
