"""The monitor of one running pipeline: metrics, KPIs and alerts wired to its parts.

It runs as one task on the pipeline's loop: every `alerts.evaluate_every` it reads the
pipeline's state, advances the alerts and queues their notifications; every
`monitor.kpi_every` it hands a KPI row to the store writer. Nothing here blocks the loop:
notifications go out from their own tasks, and store writes from the writer's thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from tickpipe.monitor.alerts.engine import FIRING, Alert, AlertEngine
from tickpipe.monitor.kpis import KpiSampler
from tickpipe.monitor.metrics import PipelineGauges, PipelineMetrics, SourceGauges
from tickpipe.monitor.notify.base import Dispatcher, alert_json
from tickpipe.monitor.notify.build import build_notifiers
from tickpipe.monitor.state import PipelineState
from tickpipe.records import Gap, PipelineMetric, TradeBatch

if TYPE_CHECKING:
    from tickpipe.pipeline import Pipeline

log = logging.getLogger("tickpipe")
ALERT_EVENT = "alert"  # kind of the alert transitions kept in the store's events table


def now_us() -> int:
    return time.time_ns() // 1000


class Monitor:
    """Metrics, KPIs and alerts of `pipeline` (built by the pipeline itself)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        config = pipeline.config
        self.alerts_config = config.alerts
        self.metrics = PipelineMetrics()
        self.metrics.watch(self.gauges)
        self.state = PipelineState()
        started = now_us()
        self.kpis = KpiSampler(config.monitor.process, started)
        self.kpi_every_us = config.monitor.kpi_every_us
        self.alerts = AlertEngine(
            config.alerts.rules if config.alerts.enabled else [],
            config.alerts.renotify_every_us,
            config.alerts.history,
            started,
        )
        self.dispatcher = Dispatcher(build_notifiers(config.alerts))
        # A file replay's event times are old: its "lag" says nothing about the pipeline.
        self.measure_lag = not (pipeline.mode == "run" and config.run.replay)
        self._failures: set[str] = set()
        self._stop_http = self.metrics.serve(config.monitor)

    def close(self) -> None:
        """Stop serving /metrics on its own port (the pipeline closes its monitor)."""
        if self._stop_http is not None:
            self._stop_http()
            self._stop_http = None

    # -- fed by the pipeline ---------------------------------------------------------------

    def on_batch(self, batch: TradeBatch) -> None:
        """A source's batch reached the engine (event loop)."""
        try:
            now = now_us()
            self.metrics.observe_received(batch, now / 1e6)
            self.state.on_received(batch, now)
        except Exception as exc:  # watching must never stop what it watches
            self._failed("counting a batch", exc)

    def on_written(self, batches: list[TradeBatch], candles: int, seconds: float) -> None:
        """The store writer wrote a flush (its thread)."""
        try:
            lags = self.metrics.observe_stored(batches, candles, seconds, now_us())
            self.state.on_stored(batches, lags)
        except Exception as exc:
            self._failed("counting a flush", exc)

    def on_event(self, event: Any) -> None:
        if isinstance(event, Gap):
            self.metrics.observe_gap(event)

    def _failed(self, what: str, exc: Exception) -> None:
        """Log a monitoring failure once per kind; the pipeline goes on."""
        if what not in self._failures:
            self._failures.add(what)
            log.error("monitor: %s failed (%s: %s); the pipeline goes on", what,
                      type(exc).__name__, exc)  # fmt: skip

    # -- the loop --------------------------------------------------------------------------

    async def run(self) -> None:
        """Evaluate alerts and keep KPIs until cancelled."""
        every = self.alerts_config.evaluate_every_s
        await self.dispatcher.start()
        next_kpi = now_us() + self.kpi_every_us
        try:
            while True:
                await asyncio.sleep(every)
                now = now_us()
                try:
                    self.step(now)
                    if now >= next_kpi:
                        next_kpi = now + self.kpi_every_us
                        self.keep_kpis(now)
                except Exception as exc:
                    self._failed("evaluating alerts and KPIs", exc)
        finally:
            await self.dispatcher.close()

    def step(self, now: int) -> list[Alert]:
        """One evaluation: sources sampled, alerts advanced, notifications queued and kept."""
        p = self.pipeline
        for name, stats in p.stats.items():
            self.state.on_source(name, stats.connected, now)
        self.state.on_prices({
            (s.instrument.exchange, s.instrument.symbol): s.last_price
            for s in list(p.engine.states) if s.last_ts > 0
        })  # fmt: skip
        busy = p.transport.depth > 0 or p.writer.pending > 0
        changed = self.alerts.evaluate(self.state.observation(now, busy, self.measure_lag))
        if changed:
            self.dispatcher.notify(changed)
            p.writer.submit(events=[
                (a.updated, ALERT_EVENT, a.rule, msgspec.json.encode(alert_json(a)).decode())
                for a in changed
            ])  # fmt: skip
        return changed

    def keep_kpis(self, now: int) -> None:
        self.pipeline.writer.submit(metrics=[self.last_kpis(now)])

    def last_kpis(self, now: int | None = None) -> PipelineMetric:
        """The KPIs of the period since the previous sample."""
        p = self.pipeline
        return self.kpis.sample(
            now or now_us(), p.writer.written_trades, p.writer.written_candles,
            self.state.kpi_lags.drain(), p.transport.depth,
        )  # fmt: skip

    # -- read by the API -------------------------------------------------------------------

    def gauges(self) -> PipelineGauges:
        p = self.pipeline
        firing = {(r.name, r.severity): 0 for r in self.alerts.rules}
        for a in self.alerts.active.values():
            if a.state == FIRING:
                firing[(a.rule, a.severity)] = firing.get((a.rule, a.severity), 0) + 1
        return PipelineGauges(
            sources={
                name: SourceGauges(s.connected, s.reconnects, s.malformed)
                for name, s in p.stats.items()
            },
            queue_depth=p.transport.depth, queue_capacity=p.transport.max_trades,
            store_pending=p.writer.pending, late_corrected=p.engine.corrections,
            late_rejected=p.counters.late_rejected, duplicates=p.counters.duplicates,
            last_trade={
                (s.instrument.exchange, s.instrument.symbol): s.last_ts
                for s in list(p.engine.states) if s.last_ts > 0
            },
            last_price={
                (s.instrument.exchange, s.instrument.symbol): s.last_price
                for s in list(p.engine.states) if s.last_ts > 0
            },
            alerts_firing=firing,
            notifications=dict(self.dispatcher.outcomes),
        )  # fmt: skip

    def alerts_body(self) -> dict[str, list[dict[str, Any]]]:
        """`/api/alerts`: what is active now and the transitions kept, newest first."""
        return {
            "active": [alert_json(a) for a in self.alerts.active.values()],
            "history": [alert_json(a) for a in reversed(self.alerts.history)],
        }


__all__ = ["ALERT_EVENT", "Monitor"]
