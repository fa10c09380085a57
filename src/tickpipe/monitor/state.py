"""What the alert rules read, gathered from the pipeline as it runs.

Fed per batch (never per trade) from the engine loop and the store writer's thread, and read
once per evaluation as an `Observation`.
"""

from __future__ import annotations

import threading

import numpy as np

from tickpipe.monitor.alerts.engine import Observation, SourceView, VenueView
from tickpipe.records import TradeBatch

MAX_SAMPLES = 100_000  # lag samples kept between two reads (a stride thins more)


class LagSamples:
    """Per-trade lags (s) of stored trades since the last `drain`, bounded in memory."""

    def __init__(self, limit: int = MAX_SAMPLES) -> None:
        self.limit = limit
        self._parts: list[np.ndarray] = []
        self._size = 0
        self._lock = threading.Lock()

    def add(self, lags: np.ndarray) -> None:
        if not len(lags):
            return
        with self._lock:
            if self._size + len(lags) > self.limit:
                # Thin both old and new evenly, so percentiles stay those of the whole period.
                merged = np.concatenate([*self._parts, lags])
                step = int(np.ceil(len(merged) / (self.limit // 2)))
                self._parts = [merged[::step]]
                self._size = len(self._parts[0])
                return
            self._parts.append(lags)
            self._size += len(lags)

    def drain(self) -> np.ndarray:
        with self._lock:
            parts, self._parts, self._size = self._parts, [], 0
        return np.concatenate(parts) if parts else np.empty(0)


class PipelineState:
    """Sources, last prices and processing lag, as the monitor sees them."""

    def __init__(self) -> None:
        self.sources: dict[str, SourceView] = {}
        self.prices: dict[tuple[str, str], float] = {}
        self.venues: dict[tuple[str, str], VenueView] = {}  # venues of composites
        self.lags = LagSamples()  # read by the alert rules
        self.kpi_lags = LagSamples()  # read by the KPI sampler
        self.last_stored_ts = 0  # newest event time written to the store, µs
        self._lock = threading.Lock()

    def on_received(self, batch: TradeBatch, now: int) -> None:
        """A source's batch reached the engine (event loop): O(1), whatever its size."""
        if not len(batch):
            return
        view = self.sources.setdefault(batch.source, SourceView(connected=True))
        view.last_trade = now

    def on_prices(self, prices: dict[tuple[str, str], float]) -> None:
        """The newest price of each (exchange, symbol), read once per evaluation from the
        engine (which keeps it by event time), rather than searched for in every batch."""
        self.prices = prices

    def on_stored(self, batches: list[TradeBatch], lags: np.ndarray) -> None:
        """A flush was written (writer thread)."""
        self.lags.add(lags)
        self.kpi_lags.add(lags)
        newest = max((int(b.ts.max()) for b in batches if len(b)), default=0)
        with self._lock:
            self.last_stored_ts = max(self.last_stored_ts, newest)

    def on_source(self, name: str, connected: bool, now: int) -> None:
        """The source's connection state as last seen (sampled every evaluation)."""
        view = self.sources.setdefault(name, SourceView(connected=connected))
        if connected:
            view.connected, view.down_since = True, None
        elif view.connected or view.down_since is None:
            view.connected, view.down_since = False, now

    def observation(self, now: int, busy: bool, lag: bool = True) -> Observation:
        """The state at `now`. `busy`: trades wait in the queue or the writer.

        Lag is the median over the trades stored since the last observation; when nothing
        was stored while trades wait, it is the age of the newest stored trade, which grows
        while the processor is stuck. `lag=False` (file replay: old event times) says none.
        """
        lags = self.lags.drain()
        lag_s: float | None = None
        if lag and len(lags):
            lag_s = float(np.median(lags))
        elif lag and busy and self.last_stored_ts:
            lag_s = (now - self.last_stored_ts) / 1e6
        sources = {
            name: SourceView(v.connected, v.last_trade, v.down_since)
            for name, v in self.sources.items()
        }
        return Observation(
            now=now, lag_s=lag_s, sources=sources, prices=dict(self.prices),
            venues=dict(self.venues),
        )  # fmt: skip
