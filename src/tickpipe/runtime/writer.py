"""The store writer: what the engine produced, written in large transactions on a thread.

DuckDB and the PostgreSQL driver release the GIL while they write, so storing overlaps
decoding and aggregation. The writer is bounded in pending trades (the engine stage waits
while it is `behind`), and counts submissions and how many of them are `durable`, which is
what a Kafka checkpoint releases offsets by.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tickpipe.records import Candle, PipelineMetric, RollingStat, TradeBatch
from tickpipe.stores.base import Store


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
        # Called on the writer thread with what each flush committed (the lake follows the
        # store: it never holds what the store may still lose).
        self.after_write: list[Callable[[list[TradeBatch], list[Candle]], None]] = []
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
                    for hook in self.after_write:
                        hook(trades, candles)
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
