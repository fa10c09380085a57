"""The status read model: one immutable `PipelineStatus` of a running pipeline.

The pipeline publishes it through a `StatusBoard` (its `read()` builds a snapshot from the
engine stage, the store writer, the queue and the sources' counters); the terminal view, the
API's `/api/kpis` and the Prometheus gauges all render this one model, so they never disagree
about what a counter means. Reading only reads: it is safe from the view's refresh thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from tickpipe.engine.composite import CompositePrice, consolidate
from tickpipe.engine.composite_settings import CompositeConfig
from tickpipe.records import Candle
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.runtime.quality import VenueQuality, engine_counts
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.writer import StoreWriter
from tickpipe.sources import SourceStats

RATE_EVERY_S = 1.0  # an instrument's trade rate is measured over at least this long


@dataclass(frozen=True)
class SourceStatus:
    connected: bool
    reconnects: int
    trades: int
    malformed: int
    last_disconnect: str = ""  # why the feed last dropped ("" while it never did)
    finished: bool = False  # the feed ended or was stopped: no reconnect is coming
    error: str = ""  # why the source stopped, when it failed


@dataclass(frozen=True)
class InstrumentStatus:
    """One (exchange, symbol) this run's sources traded (restored history is not listed)."""

    exchange: str
    symbol: str
    last_price: float | None  # None until its first trade
    last_trade_us: int | None  # event time of its newest trade
    lag_ms: float | None  # local receipt minus event time of the newest trade
    trades_per_s: float  # recent rate
    trades: int  # accepted since start-up
    candle: Candle | None  # the open candle of the smallest interval


@dataclass(frozen=True)
class PipelineStatus:
    """A running pipeline's counters at one moment."""

    mode: str
    uptime_s: float
    trades: int  # accepted, handed to the store
    candles: int  # candle updates, provisional and final
    trades_written: int  # in the store
    candles_written: int
    late_corrected: int
    late_rejected: int
    duplicates: int
    malformed: int
    queue_depth: int  # trades waiting in the transport
    queue_capacity: int
    writer_pending: int  # trades handed to the store writer, not yet written
    sources: Mapping[str, SourceStatus] = field(default_factory=dict)
    instruments: tuple[InstrumentStatus, ...] = ()
    alerts_firing: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (rule, severity)
    lake_queued: int = 0  # committed submissions waiting for the lake's thread
    lake_dropped_trades: int = 0  # not written to the lake: it was behind (export refills)
    quality: Mapping[str, VenueQuality] = field(default_factory=dict)  # per venue
    composites: tuple[CompositePrice, ...] = ()  # live consolidated prices, when configured

    @property
    def trades_per_s(self) -> float:
        return sum(i.trades_per_s for i in self.instruments)


class Queue(Protocol):
    depth: int
    max_trades: int


class LakeFeed(Protocol):
    dropped_trades: int

    @property
    def queued(self) -> int: ...


class StatusBoard:
    """Builds the `PipelineStatus` of one pipeline from the parts it reads."""

    def __init__(
        self,
        mode: str,
        stage: EngineStage,
        writer: StoreWriter,
        queue: Queue,
        sources: Mapping[str, SourceStats],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.mode = mode
        self.stage = stage
        self.writer = writer
        self.queue = queue
        self.sources = sources
        self.clock = clock
        # The monitor's alerts firing per (rule, severity), once a monitor is attached.
        self.alerts_firing: Callable[[], dict[tuple[str, str], int]] | None = None
        self.lake: LakeFeed | None = None  # the lake writer, once the pipeline has one
        self.composite: CompositeConfig | None = None  # the live composites, when configured
        self._restored_counts: dict[str, tuple[int, int]] = {}  # venue -> dups, future
        self._rates: dict[int, tuple[float, int, float]] = {}  # gid -> (time, trades, rate)
        self._restored_trades: dict[int, int] = {}  # gid -> its trades before this run

    def begin_run(self) -> None:
        """Count from here: what the restore put in the engine (instruments of earlier runs,
        perhaps of other sources, e.g. a demo on the same data dir) is history, not this run's,
        so the view and the KPIs list only instruments this run's sources trade."""
        states = list(self.stage.engine.states)
        self._restored_trades = {gid: state.trades for gid, state in enumerate(states)}
        self._restored_counts = engine_counts(states)

    def read(self) -> PipelineStatus:
        now = self.clock.monotonic_s()
        counters, engine = self.stage.counters, self.stage.engine
        rows = []
        for gid, state in enumerate(list(engine.states)):
            restored = self._restored_trades.get(gid, 0)
            trades = state.trades - restored
            if trades <= 0:
                continue  # restored history, or no trade accepted yet this run
            then, count, rate = self._rates.get(gid, (counters.started_s, restored, 0.0))
            if now - then >= RATE_EVERY_S:
                rate = (state.trades - count) / (now - then)
                self._rates[gid] = (now, state.trades, rate)
            has_trade = state.last_ts > 0
            rows.append(
                InstrumentStatus(
                    exchange=state.instrument.exchange,
                    symbol=state.instrument.symbol,
                    last_price=state.last_price if has_trade else None,
                    last_trade_us=state.last_ts if has_trade else None,
                    lag_ms=(state.last_recv_ts - state.last_ts) / 1000 if has_trade else None,
                    trades_per_s=rate,
                    trades=trades,
                    candle=engine.current_candle(state.instrument),
                )
            )
        sources = {
            name: SourceStatus(
                st.connected,
                st.reconnects,
                st.trades,
                st.malformed,
                st.last_disconnect,
                st.finished,
                st.error,
            )
            for name, st in self.sources.items()
        }
        return PipelineStatus(
            mode=self.mode,
            uptime_s=now - counters.started_s,
            trades=counters.trades,
            candles=counters.candles,
            trades_written=self.writer.written_trades,
            candles_written=self.writer.written_candles,
            late_corrected=engine.corrections,
            late_rejected=counters.late_rejected,
            duplicates=counters.duplicates,
            malformed=sum(s.malformed for s in sources.values()),
            queue_depth=self.queue.depth,
            queue_capacity=self.queue.max_trades,
            writer_pending=self.writer.pending,
            sources=sources,
            instruments=tuple(rows),
            alerts_firing=self.alerts_firing() if self.alerts_firing is not None else {},
            lake_queued=self.lake.queued if self.lake is not None else 0,
            lake_dropped_trades=self.lake.dropped_trades if self.lake is not None else 0,
            quality=self._quality(),
            composites=self._composites(),
        )

    def _quality(self) -> dict[str, VenueQuality]:
        """Per venue; the engine's counts of this run only (not what a restore replayed)."""
        if self.stage.quality is None:
            return {}
        counts = engine_counts(list(self.stage.engine.states))
        for venue, (dups, future) in self._restored_counts.items():
            now_dups, now_future = counts.get(venue, (0, 0))
            counts[venue] = (now_dups - dups, now_future - future)
        return self.stage.quality.read(self.clock.now_us(), counts)

    def _composites(self) -> tuple[CompositePrice, ...]:
        config = self.composite
        if config is None or not config.enabled:
            return ()
        latest = [
            (s.instrument.exchange, s.instrument.symbol, s.last_price, s.last_recv_ts)
            for s in list(self.stage.engine.states)
        ]
        return consolidate(latest, self.clock.now_us(), config)
