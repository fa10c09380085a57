"""The live path's lake writer: a bounded queue and its own thread.

The store writer hands over what it has committed (`offer`, never blocking); this thread
buffers it in the lake's partitions and writes files as they roll. When the queue is full the
offer is dropped and counted (`dropped_trades`, `dropped_candles`, shown in the status), so a
slow lake never slows the pipeline; `tickpipe export --since` refills the gap, writing only
what the lake lacks.
"""

from __future__ import annotations

import logging
import queue
import threading

from tickpipe.records import Candle, TradeBatch
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.stores.lake.layout import Lake

log = logging.getLogger("tickpipe")

TICK_S = 0.5  # how often an idle writer looks for partitions due to roll


class LakeWriter:
    """Feeds committed trades and final candles to a `Lake` on a thread of its own."""

    def __init__(self, lake: Lake, max_queued: int = 1_000, clock: Clock = SYSTEM_CLOCK) -> None:
        self.lake = lake
        self.clock = clock
        self.dropped_trades = 0
        self.dropped_candles = 0
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[list[TradeBatch], list[Candle]] | None] = queue.Queue(
            max_queued
        )
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="tickpipe-lake", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Submissions waiting for the lake's thread."""
        return self._queue.qsize()

    def offer(self, trades: list[TradeBatch], candles: list[Candle]) -> None:
        """Hand over what the store committed; drop it (counted) if the lake is behind."""
        finals = [c for c in candles if c.final]
        if not finals and not any(len(t) for t in trades):
            return
        try:
            self._queue.put_nowait((trades, finals))
        except queue.Full:
            self.dropped_trades += sum(len(t) for t in trades)
            self.dropped_candles += len(finals)
            if not self._warned:
                log.warning("lake %s is behind: dropping (counted; refill with tickpipe export "
                            "--since)", self.lake.settings.url)  # fmt: skip
                self._warned = True

    def close(self) -> None:
        """Write everything queued and buffered, then stop the thread."""
        self._queue.put(None)
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the lake writer failed: {self.error}") from self.error

    def _run(self) -> None:
        lake = self.lake
        try:
            while True:
                try:
                    item = self._queue.get(timeout=TICK_S)
                except queue.Empty:
                    item = ([], [])  # nothing new: only look for partitions due to roll
                if item is None:
                    lake.flush()
                    return
                now_s = self.clock.monotonic_s()
                trades, candles = item
                for batch in trades:
                    lake.add_trades(batch, now_s)
                lake.add_candles(candles, now_s)
                lake.roll(now_s)
        except BaseException as exc:
            self.error = exc
            log.error("lake %s: writer stopped: %s", lake.settings.url, exc)
            # Keep draining, counted as dropped: the status shows what the lake lacks.
            while (item := self._queue.get()) is not None:
                self.dropped_trades += sum(len(t) for t in item[0])
                self.dropped_candles += len(item[1])
