"""The embedded pipeline: sources -> bounded queue -> engine stage -> store writer, in one
process (`tickpipe run`, `tickpipe demo`).

Sources and the engine share one asyncio loop; the store writer is a thread. Every hop is
bounded: the transport in trades, the writer in pending trades (the engine waits while the
stage is `behind`, the transport fills, and the sources wait in `emit`). The pipeline
publishes its `PipelineStatus` (`status()`), which the terminal view, the API and the monitor
render; the monitor is given the status, the writer and the clock, never the pipeline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

import msgspec

from tickpipe.config import Config, ConfigError
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine, EngineOutput
from tickpipe.engine.composite import CompositeCandles
from tickpipe.engine.snapshot import SnapshotError
from tickpipe.forecast.model import ForecastUnavailable
from tickpipe.forecast.service import ForecastService, start_forecasts
from tickpipe.monitor.service import Monitor
from tickpipe.records import Disconnect, Gap, TradeBatch, concat_batches
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.runtime.pacing import HOLD_S, LINGER_S, LINGER_TRADES, StepPacer
from tickpipe.runtime.quality import QualityMeter
from tickpipe.runtime.stage import STEP_BUDGET_S, TICK_SECONDS, EngineStage
from tickpipe.runtime.status import PipelineStatus, StatusBoard
from tickpipe.runtime.writer import StoreWriter
from tickpipe.serve.app import ApiContext
from tickpipe.serve.live import Hub
from tickpipe.sources import Source, SourceContext, SourceStats
from tickpipe.sources.replay import FileReplay
from tickpipe.stores.base import SnapshotStore
from tickpipe.stores.lake.location import open_lake
from tickpipe.stores.lake.sync import catch_up
from tickpipe.stores.lake.writer import LakeWriter
from tickpipe.transport.memory import MemoryTransport

log = logging.getLogger("tickpipe")

# A file can wait for the pipeline, a live feed cannot: a file replay's queue holds ten of its
# batches rather than `queue_trades` (a million trades, which a replay at full speed fills:
# about 50 MB held for nothing).
REPLAY_QUEUE_TRADES = 100_000


class _Stopped(Exception):
    """A stop signal arrived during the restore."""


class Pipeline:
    """Wires the parts together for `tickpipe run` and `tickpipe demo`."""

    def __init__(
        self,
        config: Config,
        sources: list[Source],
        mode: str,
        hub: Hub | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.mode = mode
        self.sources = sources
        self.clock = clock
        self.engine = CandleEngine(config.engine_config())
        replay_only = bool(sources) and all(isinstance(s, FileReplay) for s in sources)
        queue = (
            min(config.queue_trades, REPLAY_QUEUE_TRADES) if replay_only else config.queue_trades
        )
        self.transport = MemoryTransport(queue)
        self.dead_letters = DeadLetters(config.dead_letter_path)
        self.store = config.open_store()
        self.writer = StoreWriter(self.store, config.flush_every_s)
        self.stage = EngineStage(
            self.engine, self.writer, self.dead_letters, clock, config.snapshot_every_s
        )
        self.forecast = self._start_forecasts() if config.forecast else None
        self.hub = hub
        if hub is not None:
            self.stage.on_output.append(self._publish)
        self.counters = self.stage.counters
        self.stats: dict[str, SourceStats] = {s.name: SourceStats() for s in sources}
        self.quality = self.stage.quality = QualityMeter()
        self.board = StatusBoard(mode, self.stage, self.writer, self.transport, self.stats, clock)
        composite = config.composite.composite_config()
        if composite.enabled:  # one process sees every venue: here, not in the Kafka mode
            self.stage.derive = CompositeCandles(composite, self.engine.horizon).update
            self.board.composite = composite
        # Trades arriving within this long of the engine's last step go in its next one.
        self.step_budget_s = STEP_BUDGET_S
        # Trades that make no candle update due wait up to this long for a step (`StepPacer`).
        self.linger_s = LINGER_S
        self.pacer = StepPacer(self.engine.windows, self.engine.config.provisional_every)
        self.stage.on_output.append(self._paced)
        self._stopping = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None  # `run`'s, for `stop`
        # A file replay's event times are old: its "lag" says nothing about the pipeline.
        measure_lag = not (mode == "run" and config.run.replay)
        try:
            self.monitor = Monitor(config, self.board.read, self.writer, measure_lag, clock)
        except BaseException:  # e.g. a busy metrics port: nothing may stay open behind it
            if self.forecast is not None:
                self.forecast.close()
            self.writer.close()
            self.store.close()
            self.dead_letters.close()
            raise
        self.board.alerts_firing = self.monitor.firing
        # The Parquet lake, if configured: fed from `restore` on, once it has caught up.
        self.lake = open_lake(config.lake_settings()) if config.lake else None
        self.lake_writer: LakeWriter | None = None
        self.writer.on_written = self.monitor.on_written
        self.stage.on_batch = self.monitor.on_batch

    def _start_forecasts(self) -> ForecastService:
        """The forecasts beside the engine (`forecast = true`): final candles handed to them."""
        try:
            service = start_forecasts(self.store, self.clock)
        except (ValueError, ForecastUnavailable) as exc:
            self.writer.close()
            self.store.close()
            self.dead_letters.close()
            raise ConfigError(f"config error: forecast = true: {exc}") from None
        self.stage.on_output.append(service.offer)
        return service

    def status(self) -> PipelineStatus:
        """The pipeline's counters now (read by the terminal view, the API and the monitor)."""
        return self.board.read()

    def api_context(self) -> ApiContext:
        """What the API reads from this pipeline: its store, hub, windows and status."""
        return ApiContext(
            store=self.store,
            hub=self.hub,
            intervals=[w.name for w in self.engine.windows],
            status=self.status,
            live_instruments=self.instruments,
            monitor=self.monitor,
        )

    def instruments(self) -> set[tuple[str, str]]:
        """(exchange, symbol) of every instrument the engine has seen, stored yet or not."""
        return {(s.instrument.exchange, s.instrument.symbol) for s in list(self.engine.states)}

    # -- lifecycle -----------------------------------------------------------------------

    def restore(self, say: Callable[[str], None] = log.info) -> bool:
        """Rebuild open windows (after a restart or a crash): from the engine snapshot the store
        keeps and the trades stored after it, else from every stored trade of the correction
        horizon; False when SIGINT or SIGTERM stopped it first.

        From here on those signals stop the pipeline (`run` takes them over): during the
        restore they end it between two batches of trades, before anything is written, so
        the stored data stays as it was and the next start restores again. `say` gets one
        line when there is something to restore.
        """
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: self._stopping.set())
        engine = self.engine
        try:
            if not self._restore_snapshot(say):
                self._restore_by_replay(say)
        except _Stopped:
            return False
        if self._stopping.is_set():
            return False
        self.board.begin_run()
        if self.lake is not None:
            # What the store committed but the lake missed (a crash between the two) first;
            # only then the live path, so restored candles are not handed to the lake again.
            self.writer.flush()
            catch_up(self.store, self.lake, engine.horizon + engine.config.allowed_lateness)
            self.lake_writer = LakeWriter(self.lake, clock=self.clock)
            self.writer.after_write.append(self.lake_writer.offer)
            self.board.lake = self.lake_writer
        return True

    def _restore_snapshot(self, say: Callable[[str], None]) -> bool:
        """The fast path: whether the store's engine snapshot restored the engine."""
        if not isinstance(self.store, SnapshotStore):
            return False
        try:
            return self.stage.restore_snapshot(self.store, self._until_stopped)
        except SnapshotError as exc:
            say(f"tickpipe {self.mode}: the stored engine snapshot is not usable ({exc}); "
                f"restoring from the stored trades instead")  # fmt: skip
            return False

    def _restore_by_replay(self, say: Callable[[str], None]) -> None:
        """Every stored trade of the correction horizon through the engine again."""
        engine = self.engine
        align = max(w.size for w in engine.windows)
        cutoff = self.store.restore_cutoff(engine.horizon, engine.config.allowed_lateness, align)
        if cutoff:
            say(f"tickpipe {self.mode}: restoring the open windows of {len(cutoff):,} "
                f"instruments from the stored trades (Ctrl-C stops)")  # fmt: skip
        batches = self.store.restore_batches(cutoff)
        try:
            self.stage.restore(self.store, cutoff, self._until_stopped(batches))
        finally:
            if isinstance(batches, Generator):
                batches.close()  # the store's reader ends now, not whenever it is collected

    def _until_stopped(self, batches: Iterable[TradeBatch]) -> Iterator[TradeBatch]:
        for batch in batches:
            if self._stopping.is_set():
                raise _Stopped
            yield batch

    async def run(self, duration: float | None = None) -> None:
        """Run until `duration` seconds pass, every source ends, or SIGINT/SIGTERM."""
        loop = self._loop = asyncio.get_running_loop()
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
        waiters: list[asyncio.Future[Any]] = [
            asyncio.ensure_future(self._stopping.wait()),
            sources_done,
            engine_task,
        ]
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

    def stop(self) -> None:
        """Stop `run` as SIGINT would; from any thread (a failed recording's calls it)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._stopping.set()
        else:
            loop.call_soon_threadsafe(self._stopping.set)

    def close(self) -> None:
        try:
            if self.forecast is not None:
                self.forecast.close()
            self.writer.close()
            if self.lake_writer is not None:
                self.lake_writer.close()
            # The last KPI period ends after the last flush, so it counts every stored trade.
            self.store.write(metrics=[self.monitor.last_kpis()])
        finally:
            self.monitor.close()
            self.store.close()
            self.dead_letters.close()

    # -- stages --------------------------------------------------------------------------

    def _paced(self, out: EngineOutput) -> None:
        """Tell the step pacer which instruments' open candles a step sent."""
        if out.candles:
            self.pacer.stepped(out.candles)

    def _publish(self, out: EngineOutput) -> None:
        """Push a step's candle updates and accepted trades to the live hub (never blocks)."""
        if self.hub is not None and (out.candles or out.accepted is not None):
            self.hub.publish(out.candles, out.accepted)

    async def _run_source(self, source: Source) -> None:
        stats = self.stats[source.name]

        def on_event(event: Gap | Disconnect) -> None:
            if isinstance(event, Disconnect):
                stats.last_disconnect = event.reason  # the view says why it waits
            self._on_event(event)

        ctx = SourceContext(
            emit=self.transport.put,
            event=on_event,
            dead_letters=self.dead_letters,
            stats=stats,
        )
        try:
            await source.run(ctx)
        except asyncio.CancelledError:
            stats.finished = True  # stopped by the pipeline (--duration, Ctrl-C)
            raise
        except Exception as exc:
            # The other sources go on; the failure is said once, plainly, and kept as an event.
            stats.error = str(exc) or type(exc).__name__
            log.error("source %s stopped: %s", source.name, exc)
            self.writer.submit(events=[(self.clock.now_us(), "source-error", source.name,
                                        str(exc))])  # fmt: skip
            raise
        stats.finished = True  # the feed ended (a replay at its end)

    def _on_event(self, event: Gap | Disconnect) -> None:
        kind = type(event).__name__.lower()
        self.monitor.on_event(event)
        if isinstance(event, Gap):
            self.quality.on_gap(event)
        detail = msgspec.json.encode(event).decode()
        self.writer.submit(events=[(event.ts, kind, event.source, detail)])

    async def _linger(self, batches: list[TradeBatch]) -> None:
        """Add what arrives to `batches` until a batch is urgent (`StepPacer`), `linger_s` has
        passed (more while an update that fell due waits for its instrument's next trade, at
        most twice that) or `LINGER_TRADES` are held."""
        loop, clock, pacer = asyncio.get_running_loop(), self.clock, self.pacer
        start = loop.time()
        deadline, longest = start + self.linger_s, start + 2 * self.linger_s
        held = sum(len(b) for b in batches)
        while held < LINGER_TRADES:
            left = deadline - loop.time()
            if left <= 0:
                hold_s = pacer.hold_us(clock.now_us(), int(HOLD_S * 1e6)) / 1e6
                deadline = min(longest, loop.time() + hold_s)
                left = deadline - loop.time()
                if left <= 0:
                    return
            more = await self.transport.get(timeout=left)
            if more is None:
                continue
            batches.append(more)
            held += len(more)
            if pacer.urgent(more, clock.now_us()):
                return

    async def _engine_loop(self) -> None:
        """Drain the transport, feed the engine stage; tick when idle."""
        clock = self.clock
        next_tick = clock.monotonic_s()
        loop = asyncio.get_running_loop()
        pacer = self.pacer
        stepped_at = -math.inf  # loop time of the last step with trades (real time: it sleeps)
        while True:
            batch = await self.transport.get(timeout=TICK_SECONDS)
            if batch is not None:
                batches = [batch]
                # Trades whose candles are not due wait (at most `linger_s`) and go in one
                # step with what comes meanwhile; a batch that makes an update due steps at
                # once (see `StepPacer`), so no candle update waits for the lingering.
                if not pacer.urgent(batch, clock.now_us()):
                    await self._linger(batches)
                # Never more than one step per `step_budget_s`; at least one loop turn first,
                # so frames already readable on the sources' sockets join the step.
                wait = stepped_at + self.step_budget_s - loop.time()
                await asyncio.sleep(max(0.0, wait))
                stepped_at = loop.time()
                for more in self.transport.get_nowait_all():
                    batches.append(more)
                    pacer.urgent(more, clock.now_us())  # notes the windows they open
                await self.transport.wake_producers()
                # Under load the queue holds many batches: one large batch per source costs
                # the engine far less per trade than many small ones.
                by_source: dict[str, list[TradeBatch]] = {}
                for b in batches:
                    by_source.setdefault(b.source, []).append(b)
                for source, group in by_source.items():
                    self.stage.process(concat_batches(group, source))
            if clock.monotonic_s() >= next_tick:
                next_tick = clock.monotonic_s() + TICK_SECONDS
                self.stage.tick()
            while self.stage.behind:
                await asyncio.sleep(0.005)  # the store is behind: stop taking from the queue
            if self._stopping.is_set() and not len(self.transport):
                self.stage.finish()
                return
