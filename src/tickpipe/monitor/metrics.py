"""Prometheus metrics of one pipeline, in its own CollectorRegistry (tests run several).

The hot path is never touched per trade: counters labelled by exchange and symbol are bumped
once per batch from numpy-grouped counts, latency histograms take a whole array at a time,
and what the pipeline already counts (source stats, queue depth, late trades: its one
`PipelineStatus`, which the terminal view and the API render too) is read when Prometheus
scrapes, by a collector, instead of being copied on every change.

Names follow Prometheus conventions: `tickpipe_` prefix, base units (`_seconds`),
`_total` on counters (prometheus-client adds it), labels for dimensions.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from tickpipe.config import ConfigError
from tickpipe.monitor.alerts.config import MonitorConfig
from tickpipe.monitor.quality_metrics import QualityCollector
from tickpipe.records import Gap, TradeBatch

if TYPE_CHECKING:  # the distributed mode's processes use the metrics without a status
    from tickpipe.runtime.status import PipelineStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
               300.0)  # fmt: skip
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class BatchHistogram(Collector):
    """A histogram that observes a numpy array at once (prometheus-client's observes one value).

    Buckets are cumulative `le` bounds as Prometheus expects; counts are kept per bucket and
    summed up when collected.
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last: above all bounds
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        if not len(values):
            return
        counts = np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self._counts)
        )
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    @property
    def count(self) -> int:
        return int(self._counts.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        buckets = [(repr(float(b)), float(c)) for b, c in zip(self.bounds, cumulative[:-1],
                                                               strict=True)]  # fmt: skip
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets,
                                    sum_value=total)  # fmt: skip


class _StatusCollector(Collector):
    """The pipeline's `PipelineStatus` (and the notifiers' outcomes) as gauges and counters."""

    def __init__(
        self,
        status: Callable[[], PipelineStatus],
        notifications: Callable[[], Mapping[tuple[str, str], int]],
    ) -> None:
        self.status = status
        self.notifications = notifications

    def collect(self) -> Iterable:
        status = self.status()
        malformed = CounterMetricFamily(
            "tickpipe_malformed_messages", "Exchange messages that could not be parsed "
            "(dead-lettered).", labels=["source"])  # fmt: skip
        reconnects = CounterMetricFamily(
            "tickpipe_reconnects", "Times a source reconnected.", labels=["source"]
        )
        connected = GaugeMetricFamily(
            "tickpipe_source_connected", "1 while the source's connection is up.",
            labels=["source"])  # fmt: skip
        for name, s in status.sources.items():
            malformed.add_metric([name], s.malformed)
            reconnects.add_metric([name], s.reconnects)
            connected.add_metric([name], 1.0 if s.connected else 0.0)
        yield from (malformed, reconnects, connected)
        yield GaugeMetricFamily(
            "tickpipe_queue_depth_trades", "Trades waiting in the transport queue.",
            value=status.queue_depth)  # fmt: skip
        yield GaugeMetricFamily(
            "tickpipe_queue_capacity_trades", "Bound of the transport queue.",
            value=status.queue_capacity)  # fmt: skip
        yield GaugeMetricFamily(
            "tickpipe_store_pending_trades", "Trades handed to the store writer, not yet written.",
            value=status.writer_pending)  # fmt: skip
        late = CounterMetricFamily(
            "tickpipe_late_trades", "Trades behind the watermark: corrected a final candle, or "
            "rejected beyond the correction horizon.", labels=["outcome"])  # fmt: skip
        late.add_metric(["corrected"], status.late_corrected)
        late.add_metric(["rejected"], status.late_rejected)
        yield late
        yield CounterMetricFamily(
            "tickpipe_duplicate_trades", "Trades dropped as already seen.", value=status.duplicates
        )
        last = GaugeMetricFamily(
            "tickpipe_last_trade_timestamp_seconds", "Event time of the newest trade.",
            labels=["exchange", "symbol"])  # fmt: skip
        for i in status.instruments:
            if i.last_trade_us is not None:
                last.add_metric([i.exchange, i.symbol], i.last_trade_us / 1e6)
        yield last
        price = GaugeMetricFamily(
            "tickpipe_last_price", "Price of the newest trade (by event time).",
            labels=["exchange", "symbol"])  # fmt: skip
        for i in status.instruments:
            if i.last_price is not None:
                price.add_metric([i.exchange, i.symbol], i.last_price)
        yield price
        firing = GaugeMetricFamily(
            "tickpipe_alerts_firing", "Alerts firing now, per rule.", labels=["rule", "severity"]
        )
        for (rule, severity), n in status.alerts_firing.items():
            firing.add_metric([rule, severity], n)
        yield firing
        sent = CounterMetricFamily(
            "tickpipe_alert_notifications", "Alert notifications by notifier and outcome "
            "(sent, failed, dropped).", labels=["notifier", "outcome"])  # fmt: skip
        for (notifier, outcome), n in self.notifications().items():
            sent.add_metric([notifier, outcome], n)
        yield sent


class PipelineMetrics:
    """Every metric of one pipeline, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.trades_received = Counter(
            "tickpipe_trades_received", "Trades received from sources (before de-duplication).",
            ["source", "exchange", "symbol"], registry=r)  # fmt: skip
        self.trades_stored = Counter(
            "tickpipe_trades_stored", "Trades written to the store.", ["exchange", "symbol"],
            registry=r)  # fmt: skip
        self.candles_written = Counter(
            "tickpipe_candles_written", "Candle updates (provisional and final) written.",
            registry=r)  # fmt: skip
        self.gaps = Counter(
            "tickpipe_gaps", "Sequence gaps a source detected.", ["source", "exchange", "symbol"],
            registry=r)  # fmt: skip
        self.backfilled = Counter(
            "tickpipe_backfilled_trades", "Trades recovered by backfill after a gap.",
            ["source", "exchange", "symbol"], registry=r)  # fmt: skip
        self.store_write = Histogram(
            "tickpipe_store_write_seconds", "Time of one store transaction (one flush).",
            buckets=WRITE_BUCKETS, registry=r)  # fmt: skip
        self.source_last_trade = Gauge(
            "tickpipe_source_last_trade_timestamp_seconds", "When the source's newest batch of "
            "trades arrived (local clock).", ["source"], registry=r)  # fmt: skip
        self.kafka_consumer_lag = Gauge(
            "tickpipe_kafka_consumer_lag", "Messages between a consumer's position and the end "
            "of its partition.", ["topic", "partition"], registry=r)  # fmt: skip
        self.processing_lag = BatchHistogram(
            "tickpipe_processing_lag_seconds", "Event time to stored (candle written), per trade.",
            LAG_BUCKETS)  # fmt: skip
        self.end_to_end = BatchHistogram(
            "tickpipe_end_to_end_latency_seconds", "Local receipt to stored, per trade.",
            LAG_BUCKETS)  # fmt: skip
        r.register(self.processing_lag)
        r.register(self.end_to_end)
        self._received: dict[tuple[str, str, str], object] = {}
        self._stored: dict[tuple[str, str], object] = {}

    def watch(
        self,
        status: Callable[[], PipelineStatus],
        notifications: Callable[[], Mapping[tuple[str, str], int]] = dict,
    ) -> None:
        """Expose the pipeline's status (and alert notifications by notifier and outcome),
        read afresh at every scrape."""
        self.registry.register(_StatusCollector(status, notifications))
        self.registry.register(QualityCollector(status))

    def serve(self, monitor: MonitorConfig) -> Callable[[], None] | None:
        """Expose /metrics on `monitor.metrics_port` (0: not at all), bound now so a busy
        port is a one-line start-up error; returns what stops it."""
        host, port = monitor.metrics_host, monitor.metrics_port
        if not port:
            return None
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"config error: monitor.metrics_port = {port}: cannot listen on {host}:{port} "
                f"({exc.strerror or exc}); choose another"
            ) from None

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5)

        return stop

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    # -- per batch -------------------------------------------------------------------------

    def observe_received(self, batch: TradeBatch, now_s: float) -> None:
        """A source's batch entered the engine (on the event loop)."""
        if not len(batch):
            return
        counts = np.bincount(batch.instrument, minlength=len(batch.instruments))
        for i in np.flatnonzero(counts):
            inst = batch.instruments[i]
            key = (batch.source, inst.exchange, inst.symbol)
            child = self._received.get(key)
            if child is None:
                child = self._received[key] = self.trades_received.labels(*key)
            child.inc(int(counts[i]))  # type: ignore[attr-defined]
        self.source_last_trade.labels(batch.source).set(now_s)

    def observe_stored(
        self, batches: Sequence[TradeBatch], candles: int, seconds: float, now_us: int
    ) -> np.ndarray:
        """A flush was written (on the writer thread); the per-trade processing lags (s)."""
        self.store_write.observe(seconds)
        if candles:
            self.candles_written.inc(candles)
        lags = []
        for batch in batches:
            if not len(batch):
                continue
            counts = np.bincount(batch.instrument, minlength=len(batch.instruments))
            for i in np.flatnonzero(counts):
                inst = batch.instruments[i]
                key = (inst.exchange, inst.symbol)
                child = self._stored.get(key)
                if child is None:
                    child = self._stored[key] = self.trades_stored.labels(*key)
                child.inc(int(counts[i]))  # type: ignore[attr-defined]
            lag = (now_us - batch.ts) / 1e6
            lags.append(lag)
            self.end_to_end.observe_many((now_us - batch.recv_ts) / 1e6)
        out = np.concatenate(lags) if lags else np.empty(0)
        self.processing_lag.observe_many(out)
        return out

    def observe_gap(self, gap: Gap) -> None:
        labels = (gap.source, gap.exchange, gap.symbol)
        self.gaps.labels(*labels).inc()
        if gap.recovered:
            self.backfilled.labels(*labels).inc(gap.recovered)
