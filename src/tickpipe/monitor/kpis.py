"""KPIs kept in the store: every few seconds one `PipelineMetric` per process, so the
dashboard and Grafana draw throughput, lag and data volume over time (not just now)."""

from __future__ import annotations

import numpy as np

from tickpipe.records import PipelineMetric


class KpiSampler:
    """Turns the pipeline's running totals into per-period KPIs."""

    def __init__(self, process: str, started: int) -> None:
        self.process = process
        self._last_ts = started
        self._last_trades = 0
        self._last_candles = 0

    def sample(
        self, now: int, trades_written: int, candles_written: int, lags: np.ndarray,
        queue_depth: int,
    ) -> PipelineMetric:  # fmt: skip
        """The period since the previous sample; `lags` are its stored trades' lags (s)."""
        period_s = max((now - self._last_ts) / 1e6, 1e-6)
        trades = trades_written - self._last_trades
        candles = candles_written - self._last_candles
        self._last_ts, self._last_trades, self._last_candles = now, trades_written, candles_written
        p50, p99 = (np.percentile(lags, [50, 99]) * 1000).tolist() if len(lags) else (0.0, 0.0)
        return PipelineMetric(
            ts=now, process=self.process, period_s=period_s, trades=trades,
            trades_per_s=trades / period_s, candles=candles, lag_p50_ms=p50, lag_p99_ms=p99,
            queue_depth=queue_depth,
        )  # fmt: skip
