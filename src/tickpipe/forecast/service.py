"""The runner hook: forecasts made beside the engine, never on its per-trade path.

The engine stage hands each step's output to `offer` (an `on_output` hook), which keeps only
the final candles and puts them on a bounded queue: one `put_nowait`, so the engine never
waits for the model. A thread of its own scores, learns and forecasts, and writes the new
forecasts and the changed scores to the store at most every `write_every_s`. A full queue
drops candles (counted in `dropped`) rather than slow the engine; the evaluator treats the
candles it did not see as a gap. `cpu_s` is the thread's CPU time spent in the models, which
`benchmarks/forecast.py` reports per candle.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from tickpipe.engine.candles import EngineOutput
from tickpipe.forecast.evaluator import Forecasts
from tickpipe.forecast.model import ReturnModel, require_river
from tickpipe.forecast.scores import ForecastPoint
from tickpipe.records import Candle
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.stores.forecasts import ForecastStore

log = logging.getLogger("tickpipe")

MAX_PENDING_STEPS = 10_000  # engine steps with final candles waiting for the models


class ForecastService:
    """Final candles in (`offer`), forecasts and scores out to the store, on a thread."""

    def __init__(
        self,
        store: ForecastStore,
        clock: Clock = SYSTEM_CLOCK,
        write_every_s: float = 1.0,
        max_pending: int = MAX_PENDING_STEPS,
        model: Callable[[], ReturnModel] = ReturnModel,
    ) -> None:
        require_river()
        self.store = store
        self.clock = clock
        self.write_every_s = write_every_s
        self.forecasts = Forecasts(model)
        self.forecasts.carry_on(store.forecast_scores())
        self.candles = 0  # final candles the models have seen
        self.dropped = 0  # final candles the full queue turned away
        self.cpu_s = 0.0  # this thread's CPU time in the models
        self.error: BaseException | None = None
        self._queue: queue.Queue[list[Candle] | None] = queue.Queue(max_pending)
        self._points: list[ForecastPoint] = []
        self._dirty: set[tuple[str, str, str]] = set()  # instruments whose scores changed
        self._thread = threading.Thread(target=self._run, name="tickpipe-forecast", daemon=True)
        self._thread.start()

    def offer(self, out: EngineOutput) -> None:
        """The engine stage's hook: the step's final candles, queued (never waits)."""
        finals = [c for c in out.candles if c.final]
        if not finals:
            return
        try:
            self._queue.put_nowait(finals)
        except queue.Full:
            self.dropped += len(finals)

    def close(self) -> None:
        """Forecast what is queued, write it and stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        next_write_s = self.clock.monotonic_s() + self.write_every_s
        while True:
            try:
                item = self._queue.get(timeout=self.write_every_s)
            except queue.Empty:
                item = []
            if item is None:
                self._write()
                return
            if item and self.error is None:
                started = time.thread_time()
                try:
                    self._points += self.forecasts.observe(item, self.clock.now_us())
                    self._dirty.update((c.exchange, c.symbol, c.interval) for c in item)
                except Exception as exc:  # a model's failure stops forecasts, not the pipeline
                    self.error = exc
                    log.error("forecasts stopped: %s", exc)
                self.cpu_s += time.thread_time() - started
                self.candles += len(item)
            if self.clock.monotonic_s() >= next_write_s:
                next_write_s = self.clock.monotonic_s() + self.write_every_s
                self._write()

    def _write(self) -> None:
        points, self._points = self._points, []
        dirty, self._dirty = self._dirty, set()
        by_key = self.forecasts.by_key
        scores = [s for key in dirty if key in by_key for s in by_key[key].scores.values()]
        try:
            self.store.write_forecasts(points, scores)
        except Exception as exc:  # the candles' writer reports a failing store; say it once
            if self.error is None:
                self.error = exc
                log.error("forecasts not stored: %s", exc)


def start_forecasts(store: object, clock: Clock = SYSTEM_CLOCK) -> ForecastService:
    """The service over `store`; a `ValueError` in one line when the store keeps no forecasts
    (river missing: `ForecastUnavailable`, which says how to install it)."""
    if not isinstance(store, ForecastStore):
        raise ValueError(
            "forecasts are kept in the DuckDB and PostgreSQL stores only, not in this one"
        )
    return ForecastService(store, clock)
