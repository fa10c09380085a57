"""`tickpipe ingest`: the sources of `run`, publishing to Kafka instead of aggregating.

A short runner: the sources, a `TradePublisher`, dead letters and /metrics, on one loop; no
engine stage or store writer (the `tickpipe process` replicas have those).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass
from typing import Any

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.monitor.metrics import PipelineMetrics
from tickpipe.records import TradeBatch
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.sources import Source, SourceContext, SourceStats
from tickpipe.transport.kafka import Heartbeats, TradePublisher, ensure_topic, stall_cause

log = logging.getLogger("tickpipe.ingest")
STALL_S = 2.0  # no delivery for this long while messages wait: say why, once


@dataclass
class IngestResult:
    trades: int
    messages: int
    undelivered: int
    error: str | None


def run_ingest(
    config: Config, sources: list[Source], duration: float | None, clock: Clock = SYSTEM_CLOCK
) -> IngestResult:
    """Run the sources until `duration`, SIGINT/SIGTERM or their end; deliver everything.
    With `monitor.metrics_port`, /metrics counts what each source received. The trades topic
    is created when missing; while brokers cannot take messages, one line says why, and
    another how long producing stalled once it resumes."""
    warning = ensure_topic(config.kafka, config.kafka.trades_topic, {}, config.kafka.partitions)
    if warning:
        log.warning("%s", warning)
    publisher = TradePublisher(config.kafka, clock=clock)  # an Avro schema refused stops here
    metrics = PipelineMetrics()
    stop_metrics = metrics.serve(config.monitor)
    heartbeats = None
    if config.kafka.heartbeat_ms and config.kafka.encoding != "avro":  # Avro readers: none
        idle_s = config.idle_timeout_us / 1e6
        heartbeats = Heartbeats(publisher, config.kafka.heartbeat_ms / 1000, idle_s)
    dead_letters = DeadLetters(config.dead_letter_path)
    try:
        asyncio.run(_run(sources, publisher, dead_letters, duration, metrics, clock, heartbeats))
    finally:
        undelivered = publisher.flush(60)
        dead_letters.close()
        if stop_metrics is not None:
            stop_metrics()
    return IngestResult(
        publisher.sent_trades, publisher.sent_messages, undelivered, publisher.error
    )


async def _run(
    sources: list[Source], publisher: TradePublisher, dead_letters: DeadLetters,
    duration: float | None, metrics: PipelineMetrics, clock: Clock,
    heartbeats: Heartbeats | None = None,
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)

    async def emit(batch: TradeBatch) -> None:
        metrics.observe_received(batch, clock.now_us() / 1e6)
        await publisher.emit(batch)

    async def run_source(source: Source) -> None:
        ctx = SourceContext(emit=emit, dead_letters=dead_letters, stats=SourceStats())
        try:
            await source.run(ctx)
        except Exception as exc:
            log.error("source %s stopped: %s", source.name, exc)
            raise

    async def deliver() -> None:
        # Delivery reports arrive through poll(); an idle producer must still be polled.
        stalled_s = 0.0  # how long the reported stall has lasted; 0: none reported
        while True:
            publisher.producer.poll(0)
            if heartbeats is not None:
                heartbeats.step()
            waited_s = publisher.stalled_s()
            if waited_s >= STALL_S and not stalled_s:
                cause = await asyncio.to_thread(stall_cause, publisher.kafka)
                log.warning("producing stalled %.0f s: %s", waited_s, cause)
            elif stalled_s and waited_s < stalled_s:  # a delivery: the wait began again
                log.warning("producing resumed after %.1f s stalled", stalled_s)
                stalled_s = 0.0
            if waited_s >= STALL_S:
                stalled_s = waited_s
            await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(run_source(s)) for s in sources]
    poller = asyncio.create_task(deliver())
    done: asyncio.Future[Any] = asyncio.gather(*tasks, return_exceptions=True)
    stop: asyncio.Future[Any] = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait([done, stop], timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in [*tasks, poller, stop]:
            task.cancel()
        await asyncio.gather(*tasks, poller, stop, return_exceptions=True)
