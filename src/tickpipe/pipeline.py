"""The embedded pipeline: sources -> bounded queue -> engine -> store writer, in one process.

Sources and the engine share one asyncio loop; the store writer is a thread, because DuckDB
releases the GIL while it writes, so storing overlaps decoding and aggregation. Every hop is
bounded: the transport in trades, the writer in pending trades (the engine waits when the
writer falls behind, the transport fills, and the sources wait in `emit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine, EngineOutput
from tickpipe.monitor.service import Monitor
from tickpipe.records import (
    Candle,
    Disconnect,
    Gap,
    PipelineMetric,
    RollingStat,
    TradeBatch,
    concat_batches,
)
from tickpipe.sources import Source, SourceContext, SourceStats
from tickpipe.stores.base import Store
from tickpipe.transport.memory import MemoryTransport
from tickpipe.view.terminal import Snapshot, SymbolRow

if TYPE_CHECKING:
    from tickpipe.serve.live import Hub

TICK_SECONDS = 0.1
log = logging.getLogger("tickpipe")


def now_us() -> int:
    return time.time_ns() // 1000


@dataclass
class Counters:
    """What the engine step has seen since start-up."""

    trades: int = 0  # accepted, handed to the store
    candles: int = 0  # candle updates, provisional and final
    late_rejected: int = 0  # behind the correction horizon: dead-lettered
    duplicates: int = 0
    started: float = field(default_factory=time.monotonic)


class StoreWriter:
    """Collects what the engine produced and writes it in large transactions on a thread.

    Trades and the candle updates they caused are handed over together and always land in
    the same transaction, so the file never holds a candle without its trades.
    """

    def __init__(self, store: Store, flush_every: float = 0.2, max_pending: int = 250_000):
        self.store = store
        self.flush_every = flush_every
        self.max_pending = max_pending
        self.error: BaseException | None = None
        self.written_trades = 0
        self.written_candles = 0
        self._pending_trades = 0
        # Submissions counted, and how many of them are written: a Kafka processor commits an
        # offset only once everything submitted before it is `durable`.
        self.submitted = 0
        self.durable = 0
        self._flush_now = False
        self._trades: list[TradeBatch] = []
        self._candles: list[Candle] = []
        self._rolling: list[RollingStat] = []
        self._events: list[tuple[int, str, str, str]] = []
        self._metrics: list[PipelineMetric] = []
        # Called on the writer thread after each flush: (trade batches, candles, seconds).
        self.on_written: Callable[[list[TradeBatch], int, float], None] | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="tickpipe-store", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending_trades

    def submit(
        self,
        trades: TradeBatch | None = None,
        candles: list[Candle] | tuple = (),
        rolling: list[RollingStat] | tuple = (),
        events: list[tuple[int, str, str, str]] | tuple = (),
        metrics: list[PipelineMetric] | tuple = (),
    ) -> None:
        if self.error is not None:
            raise RuntimeError(f"the store writer failed: {self.error}") from self.error
        with self._cond:
            if trades is not None and len(trades):
                self._trades.append(trades)
                self._pending_trades += len(trades)
            self._candles.extend(candles)
            self._rolling.extend(rolling)
            self._events.extend(events)
            self._metrics.extend(metrics)
            self.submitted += 1
            if self._pending_trades >= self.max_pending:
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is pending now and wait for it; False if `timeout` passed first."""
        with self._cond:
            target = self.submitted
            self._flush_now = True
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self.durable >= target or self.error is not None or self._stop, timeout
            )

    def close(self) -> None:
        """Write everything still pending and stop the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the store writer failed: {self.error}") from self.error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: (
                        self._stop or self._flush_now or self._pending_trades >= self.max_pending
                    ),
                    timeout=self.flush_every,
                )
                self._flush_now = False
                upto = self.submitted
                trades, self._trades = self._trades, []
                candles, self._candles = self._candles, []
                rolling, self._rolling = self._rolling, []
                events, self._events = self._events, []
                metrics, self._metrics = self._metrics, []
                stopping = self._stop
            try:
                if trades or candles or rolling or events or metrics:
                    started = time.perf_counter()
                    self.store.write(trades, candles, rolling, events, metrics)
                    self.written_trades += sum(len(t) for t in trades)
                    self.written_candles += len(candles)
                    if self.on_written is not None:
                        self.on_written(trades, len(candles), time.perf_counter() - started)
            except BaseException as exc:
                self.error = exc
                return
            finally:
                with self._cond:
                    self._pending_trades -= sum(len(t) for t in trades)
                    if self.error is None:
                        self.durable = upto
                    self._cond.notify_all()
            if stopping:
                return


class EngineStage:
    """One engine step: a batch (or a tick) in, its results handed to the store writer.

    Shared by the pipeline's engine loop and the benchmark, so both run the same code.
    With a live `hub`, each step's candle updates and accepted trades are also pushed to
    its subscribers (the hub never blocks; the benchmark passes none).
    """

    def __init__(
        self,
        engine: CandleEngine,
        writer: StoreWriter,
        dead_letters: DeadLetters,
        hub: Hub | None = None,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.dead_letters = dead_letters
        self.hub = hub
        self.counters = Counters()
        self.on_batch: Callable[[TradeBatch], None] | None = None  # the monitor's, if any

    @property
    def behind(self) -> bool:
        """The store writer holds more than its bound: stop taking input until it catches up."""
        return self.writer.pending > self.writer.max_pending and self.writer.error is None

    def process(self, batch: TradeBatch) -> None:
        if self.on_batch is not None:
            self.on_batch(batch)
        self._apply(self.engine.process(batch, now_us()))

    def tick(self) -> None:
        self._apply(self.engine.tick(now_us()))

    def finish(self) -> None:
        """Send every candle with unsent changes (at shutdown)."""
        self._apply(EngineOutput(candles=self.engine.flush(now_us())))

    def _apply(self, out: EngineOutput) -> None:
        counters = self.counters
        if out.late is not None:
            counters.late_rejected += len(out.late)
            for trade in out.late.to_trades():
                self.dead_letters.write(
                    trade.source, "late: older than the correction horizon",
                    msgspec.json.encode(trade),
                )  # fmt: skip
        counters.duplicates += out.duplicates
        if out.accepted is not None:
            counters.trades += len(out.accepted)
        counters.candles += len(out.candles)
        if out.accepted is not None or out.candles or out.rolling:
            self.writer.submit(out.accepted, out.candles, out.rolling)
        if self.hub is not None and (out.candles or out.accepted is not None):
            self.hub.publish(out.candles, out.accepted)


class Pipeline:
    """Wires the parts together for `tickpipe run` and `tickpipe demo`."""

    def __init__(
        self, config: Config, sources: list[Source], mode: str, hub: Hub | None = None
    ) -> None:
        self.config = config
        self.mode = mode
        self.sources = sources
        self.engine = CandleEngine(config.engine_config())
        self.transport = MemoryTransport(config.queue_trades)
        self.dead_letters = DeadLetters(config.dead_letter_path)
        self.store = config.open_store()
        self.writer = StoreWriter(self.store, config.flush_every_s)
        self.stage = EngineStage(self.engine, self.writer, self.dead_letters, hub)
        self.hub = hub
        self.dashboard_url: str | None = None
        self.counters = self.stage.counters
        self.stats: dict[str, SourceStats] = {s.name: SourceStats() for s in sources}
        self.restored_trades = 0
        self._rates: dict[int, tuple[float, int, float]] = {}  # gid -> (time, trades, rate)
        self._stopping = asyncio.Event()
        try:
            self.monitor = Monitor(self)
        except BaseException:  # e.g. a busy metrics port: nothing may stay open behind it
            self.writer.close()
            self.store.close()
            self.dead_letters.close()
            raise
        self.writer.on_written = self.monitor.on_written
        self.stage.on_batch = self.monitor.on_batch

    # -- lifecycle -----------------------------------------------------------------------

    def restore(self) -> None:
        """Rebuild open windows from the stored trades (after a restart or a crash)."""
        engine = self.engine
        align = max(w.size for w in engine.windows)
        cutoff = self.store.restore_cutoff(engine.horizon, engine.config.allowed_lateness, align)
        if not cutoff:
            return
        since = min(cutoff.values())
        revisions, finals = self.store.revisions(since), self.store.finals(since)

        def counted(batches: Iterable[TradeBatch]) -> Iterator[TradeBatch]:
            for batch in batches:
                self.restored_trades += len(batch)
                yield batch

        batches = counted(self.store.restore_batches(cutoff))
        candles = engine.restore(batches, cutoff, revisions, now_us(), finals)
        self.store.write(candles=candles)

    async def run(self, duration: float | None = None) -> None:
        """Run until `duration` seconds pass, every source ends, or SIGINT/SIGTERM."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._stopping.set)
        tasks = [
            asyncio.create_task(self._run_source(source), name=f"source:{source.name}")
            for source in self.sources
        ]
        engine_task = asyncio.create_task(self._engine_loop(), name="engine")
        monitor_task = asyncio.create_task(self.monitor.run(), name="monitor")
        sources_done = asyncio.gather(*tasks, return_exceptions=True)
        waiters = [asyncio.ensure_future(self._stopping.wait()), sources_done, engine_task]
        try:
            await asyncio.wait(waiters, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._stopping.set()
            try:
                await asyncio.gather(engine_task, return_exceptions=False)
            finally:
                monitor_task.cancel()
                await asyncio.gather(monitor_task, return_exceptions=True)
            waiters[0].cancel()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def close(self) -> None:
        try:
            self.writer.close()
            # The last KPI period ends after the last flush, so it counts every stored trade.
            self.store.write(metrics=[self.monitor.last_kpis()])
        finally:
            self.monitor.close()
            self.store.close()
            self.dead_letters.close()

    # -- stages --------------------------------------------------------------------------

    async def _run_source(self, source: Source) -> None:
        ctx = SourceContext(
            emit=self.transport.put,
            event=self._on_event,
            dead_letters=self.dead_letters,
            stats=self.stats[source.name],
        )
        try:
            await source.run(ctx)
        except Exception as exc:
            # The other sources go on; the failure is said once, plainly, and kept as an event.
            log.error("source %s stopped: %s", source.name, exc)
            self.writer.submit(events=[(now_us(), "source-error", source.name, str(exc))])
            raise

    def _on_event(self, event: Gap | Disconnect) -> None:
        kind = type(event).__name__.lower()
        self.monitor.on_event(event)
        detail = msgspec.json.encode(event).decode()
        self.writer.submit(events=[(event.ts, kind, event.source, detail)])

    async def _engine_loop(self) -> None:
        """Drain the transport, feed the engine, hand results to the writer; tick when idle."""
        next_tick = time.monotonic()
        while True:
            batch = await self.transport.get(timeout=TICK_SECONDS)
            if batch is not None:
                # One turn of the loop first: frames already readable on the sources' sockets
                # join this step instead of each costing a step of its own.
                await asyncio.sleep(0)
                batches = [batch, *self.transport.get_nowait_all()]
                await self.transport.wake_producers()
                # Under load the queue holds many batches: one large batch per source costs
                # the engine far less per trade than many small ones.
                by_source: dict[str, list[TradeBatch]] = {}
                for b in batches:
                    by_source.setdefault(b.source, []).append(b)
                for source, group in by_source.items():
                    self.stage.process(concat_batches(group, source))
            if time.monotonic() >= next_tick:
                next_tick = time.monotonic() + TICK_SECONDS
                self.stage.tick()
            while self.stage.behind:
                await asyncio.sleep(0.005)  # the store is behind: stop taking from the queue
            if self._stopping.is_set() and not len(self.transport):
                self.stage.finish()
                return

    # -- terminal view -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """What the terminal view shows; called from its refresh thread, so it only reads."""
        now = time.monotonic()
        rows = []
        for gid, state in enumerate(list(self.engine.states)):
            then, count, rate = self._rates.get(gid, (self.counters.started, 0, 0.0))
            if now - then >= 1.0:
                rate = (state.trades - count) / (now - then)
                self._rates[gid] = (now, state.trades, rate)
            has_trade = state.last_ts > 0
            rows.append(
                SymbolRow(
                    exchange=state.instrument.exchange,
                    symbol=state.instrument.symbol,
                    last_price=state.last_price if has_trade else None,
                    candle=self.engine.current_candle(state.instrument),
                    trades_per_s=rate,
                    lag_ms=(state.last_recv_ts - state.last_ts) / 1000 if has_trade else None,
                    trades=state.trades,
                )
            )
        uptime = now - self.counters.started
        total_rate = sum(r.trades_per_s for r in rows)
        sources = {}
        for name, st in self.stats.items():
            sources[name] = "connected" if st.connected else f"waiting ({st.reconnects} reconnects)"
        return Snapshot(
            mode=self.mode,
            data_path=self.store.describe(),
            dead_letter_path=str(self.config.dead_letter_path),
            uptime_s=uptime,
            trades_total=self.counters.trades,
            trades_per_s=total_rate,
            candles_written=self.writer.written_candles,
            late_corrected=self.engine.corrections,
            late_rejected=self.counters.late_rejected,
            duplicates=self.counters.duplicates,
            malformed=sum(st.malformed for st in self.stats.values()),
            queue_depth=self.transport.depth,
            queue_capacity=self.transport.max_trades,
            sources=sources,
            rows=rows,
            dashboard_url=self.dashboard_url,
        )

    def kpis(self) -> dict[str, object]:
        """The counters the API's /api/kpis shows (read on the event loop, like the view)."""
        return {
            "mode": self.mode, "uptime_s": time.monotonic() - self.counters.started,
            "trades": self.counters.trades, "candles": self.counters.candles,
            "candles_written": self.writer.written_candles,
            "late_corrected": self.engine.corrections,
            "late_rejected": self.counters.late_rejected, "duplicates": self.counters.duplicates,
            "malformed": sum(st.malformed for st in self.stats.values()),
            "queue_depth": self.transport.depth, "queue_capacity": self.transport.max_trades,
            "writer_pending": self.writer.pending,
            "sources": {
                name: {"connected": st.connected, "reconnects": st.reconnects,
                       "trades": st.trades}
                for name, st in self.stats.items()
            },
        }  # fmt: skip

    def instruments(self) -> set[tuple[str, str]]:
        """(exchange, symbol) of every instrument the engine has seen, stored yet or not."""
        return {(s.instrument.exchange, s.instrument.symbol) for s in list(self.engine.states)}
