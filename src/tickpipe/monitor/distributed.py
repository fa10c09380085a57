"""Metrics and KPIs of the distributed mode's processes (`tickpipe ingest` and `process`).

The embedded pipeline has the whole `Monitor`; these processes have no API, so they expose
/metrics on `monitor.metrics_port` (the Prometheus scrape target of deploy/), and a processor
also keeps its KPIs in the store and reports its Kafka consumer lag per partition.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from tickpipe.config import Config
from tickpipe.monitor.kpis import KpiSampler
from tickpipe.monitor.metrics import PipelineMetrics
from tickpipe.records import TradeBatch
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.runtime.writer import StoreWriter


class ProcessorMonitor:
    """What one `tickpipe process` replica counts: trades in and stored, lag, consumer lag,
    and a `PipelineMetric` in the store every `monitor.kpi_every`."""

    def __init__(
        self, config: Config, writer: StoreWriter, process: str, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self.metrics = PipelineMetrics()
        self.writer = writer
        self.clock = clock
        self.kpis = KpiSampler(process, clock.now_us())
        self.every = config.monitor.kpi_every_us
        self.next_kpi = clock.now_us() + self.every
        self._lags: collections.deque[np.ndarray] = collections.deque()  # writer thread -> loop
        writer.on_written = self._on_written
        self._stop_http = self.metrics.serve(config.monitor)

    def _on_written(self, batches: list[TradeBatch], candles: int, seconds: float) -> None:
        self._lags.append(
            self.metrics.observe_stored(batches, candles, seconds, self.clock.now_us())
        )

    def received(self, batch: TradeBatch) -> None:
        self.metrics.observe_received(batch, self.clock.now_us() / 1e6)

    def step(self, consumer: Any, topic: str, force: bool = False) -> None:
        """Every `kpi_every` (or now, with `force`): the consumer lag per owned partition, and
        the period's KPIs handed to the store writer."""
        now = self.clock.now_us()
        if now < self.next_kpi and not force:
            return
        self.next_kpi = now + self.every
        self.observe_consumer_lag(consumer, topic)
        lags = [self._lags.popleft() for _ in range(len(self._lags))]
        self.writer.submit(
            metrics=[
                self.kpis.sample(
                    now, self.writer.written_trades, self.writer.written_candles,
                    np.concatenate(lags) if lags else np.empty(0), self.writer.pending,
                )
            ]
        )  # fmt: skip

    def observe_consumer_lag(self, consumer: Any, topic: str) -> None:
        """Messages between this consumer's position and each owned partition's end.

        The high watermark comes from the last fetch (`cached=True`): no broker round trip.
        """
        owned = consumer.assignment()
        if not owned:
            return
        for tp in consumer.position(owned):
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                lag = max(high - tp.offset, 0)
                self.metrics.kafka_consumer_lag.labels(topic, str(tp.partition)).set(lag)

    def close(self) -> None:
        if self._stop_http is not None:
            self._stop_http()
            self._stop_http = None
