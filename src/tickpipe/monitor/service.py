"""The monitor of one running pipeline: metrics, KPIs and alerts wired to its parts.

It is given what it watches, not the pipeline: the pipeline's status provider (the one
`PipelineStatus` read model), its store writer and a clock. It runs as one task on the
pipeline's loop that only sleeps `alerts.evaluate_every` and calls `tick(now_us)`: a tick reads
the status, advances the alerts and queues their notifications, and every `monitor.kpi_every`
hands a KPI row (counted from the status) to the store writer; tests call `tick` with a
`ManualClock`'s time instead of waiting. Nothing here blocks the loop: notifications go out
from their own tasks, and store writes from the writer's thread. The Prometheus gauges render
the same status at each scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from tickpipe.config import Config
from tickpipe.monitor.alerts.engine import FIRING, Alert, AlertEngine, VenueView
from tickpipe.monitor.kpis import KpiSampler
from tickpipe.monitor.metrics import PipelineMetrics
from tickpipe.monitor.notify.base import Dispatcher, alert_json
from tickpipe.monitor.notify.build import build_notifiers
from tickpipe.monitor.state import PipelineState
from tickpipe.records import Gap, PipelineMetric, TradeBatch
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.runtime.status import PipelineStatus
from tickpipe.runtime.writer import StoreWriter

log = logging.getLogger("tickpipe")
ALERT_EVENT = "alert"  # kind of the alert transitions kept in the store's events table


class Monitor:
    """Metrics, KPIs and alerts of one pipeline, read through `status` (built by the pipeline).

    `measure_lag`: False for a file replay, whose old event times say nothing about lag.
    """

    def __init__(
        self,
        config: Config,
        status: Callable[[], PipelineStatus],
        writer: StoreWriter,
        measure_lag: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.status = status
        self.writer = writer
        self.clock = clock
        self.alerts_config = config.alerts
        self.metrics = PipelineMetrics()
        self.state = PipelineState()
        started = clock.now_us()
        self.kpis = KpiSampler(config.monitor.process, started)
        self.kpi_every_us = config.monitor.kpi_every_us
        self.next_kpi_us = started + self.kpi_every_us
        self.alerts = AlertEngine(
            config.alerts.rules if config.alerts.enabled else [],
            config.alerts.renotify_every_us,
            config.alerts.history,
            started,
        )
        self.dispatcher = Dispatcher(build_notifiers(config.alerts))
        self.metrics.watch(status, lambda: self.dispatcher.outcomes)
        self.measure_lag = measure_lag
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
            now = self.clock.now_us()
            self.metrics.observe_received(batch, now / 1e6)
            self.state.on_received(batch, now)
        except Exception as exc:  # watching must never stop what it watches
            self._failed("counting a batch", exc)

    def on_written(self, batches: list[TradeBatch], candles: int, seconds: float) -> None:
        """The store writer wrote a flush (its thread)."""
        try:
            lags = self.metrics.observe_stored(batches, candles, seconds, self.clock.now_us())
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
        """Call `tick` every `alerts.evaluate_every` until cancelled; notifiers run meanwhile."""
        every = self.alerts_config.evaluate_every_s
        await self.dispatcher.start()
        try:
            while True:
                await asyncio.sleep(every)
                self.tick(self.clock.now_us())
        finally:
            await self.dispatcher.close()

    def tick(self, now_us: int) -> None:
        """One step of the loop at `now_us`: alerts evaluated (`step`), and the KPIs kept once
        `monitor.kpi_every` has passed since the last ones. A failure is logged once per kind
        and the next tick tries again."""
        try:
            self.step(now_us)
            if now_us >= self.next_kpi_us:
                self.next_kpi_us = now_us + self.kpi_every_us
                self.keep_kpis(now_us)
        except Exception as exc:
            self._failed("evaluating alerts and KPIs", exc)

    def step(self, now: int) -> list[Alert]:
        """One evaluation: sources sampled, alerts advanced, notifications queued and kept."""
        status = self.status()
        for name, source in status.sources.items():
            self.state.on_source(name, source.connected, now)
        self.state.on_prices({
            (i.exchange, i.symbol): i.last_price
            for i in status.instruments if i.last_price is not None
        })  # fmt: skip
        self.state.venues = {
            (v.exchange, v.symbol): VenueView(c.symbol, v.deviation_pct, v.stale_s)
            for c in status.composites for v in c.venues
        }  # fmt: skip
        busy = status.queue_depth > 0 or status.writer_pending > 0
        changed = self.alerts.evaluate(self.state.observation(now, busy, self.measure_lag))
        if changed:
            self.dispatcher.notify(changed)
            self.writer.submit(events=[
                (a.updated, ALERT_EVENT, a.rule, msgspec.json.encode(alert_json(a)).decode())
                for a in changed
            ])  # fmt: skip
        return changed

    def keep_kpis(self, now: int) -> None:
        self.writer.submit(metrics=[self.last_kpis(now)])

    def last_kpis(self, now: int | None = None) -> PipelineMetric:
        """The KPIs of the period since the previous sample."""
        status = self.status()
        return self.kpis.sample(
            now or self.clock.now_us(), status.trades_written, status.candles_written,
            self.state.kpi_lags.drain(), status.queue_depth,
        )  # fmt: skip

    # -- read by the API -------------------------------------------------------------------

    def firing(self) -> dict[tuple[str, str], int]:
        """Alerts firing now per (rule, severity), every rule present (0 when quiet)."""
        firing = {(r.name, r.severity): 0 for r in self.alerts.rules}
        for a in self.alerts.active.values():
            if a.state == FIRING:
                firing[(a.rule, a.severity)] = firing.get((a.rule, a.severity), 0) + 1
        return firing

    def alerts_body(self) -> dict[str, list[dict[str, Any]]]:
        """`/api/alerts`: what is active now and the transitions kept, newest first."""
        return {
            "active": [alert_json(a) for a in self.alerts.active.values()],
            "history": [alert_json(a) for a in reversed(self.alerts.history)],
        }


__all__ = ["ALERT_EVENT", "Monitor"]
