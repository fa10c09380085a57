"""The tickpipe path as `tickpipe run` drives it, minus the network: bytes in, stored candles out.

Each chunk of frames goes through `parse_frames`, `CandleEngine.process` and the real
`StoreWriter` thread into a DuckDB file, with the engine loop's other duties kept: the idle
tick every 100 ms, waiting while the writer is behind, and the final flush. Engine and writer
settings are tickpipe's defaults (`Config`), so the figures are those of an unconfigured run.
The asyncio transport hop is left out: per chunk it is one deque append and one wake-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine
from tickpipe.runtime.clock import now_us
from tickpipe.runtime.stage import TICK_SECONDS, Counters, EngineStage
from tickpipe.runtime.writer import StoreWriter
from tickpipe.sources.binance.parse import InstrumentIndex, parse_frames
from tickpipe.stores.duckdb import DuckDBStore


@dataclass
class PathCounts:
    """What went through: every frame should end up as an accepted, stored trade."""

    frames: int = 0
    rejected: int = 0
    counters: Counters = field(default_factory=Counters)
    store_wait_s: float = 0.0  # wall time the input stood still because the store was behind

    @property
    def trades(self) -> int:
        return self.counters.trades

    @property
    def late(self) -> int:
        return self.counters.late_rejected

    @property
    def duplicates(self) -> int:
        return self.counters.duplicates

    @property
    def candle_updates(self) -> int:
        return self.counters.candles


class TickpipePath:
    """The pipeline's engine step (`EngineStage`), fed chunk by chunk from the caller's thread."""

    def __init__(
        self, db_path: Path, symbols: list[str], intervals: list[str], threads: int | None
    ) -> None:
        config = Config(intervals=list(intervals))
        self.index = InstrumentIndex.for_symbols(symbols)
        self.engine = CandleEngine(config.engine_config())
        self.store = DuckDBStore(db_path, threads=threads, memory_limit=config.duckdb_memory_limit)
        self.writer = StoreWriter(self.store, config.flush_every_s)
        self.stage = EngineStage(self.engine, self.writer, DeadLetters(None))
        self.counts = PathCounts(counters=self.stage.counters)
        self._next_tick = time.monotonic() + TICK_SECONDS

    def feed(self, frames: list[bytes]) -> None:
        """One chunk, as a WebSocket reader hands it over."""
        batch, rejects, *_ = parse_frames(frames, now_us(), self.index)
        self.counts.frames += len(frames)
        self.counts.rejected += len(rejects)
        self.stage.process(batch)
        if time.monotonic() >= self._next_tick:
            self._next_tick = time.monotonic() + TICK_SECONDS
            self.stage.tick()
        if self.stage.behind:
            t0 = time.perf_counter()
            while self.stage.behind:
                time.sleep(0.005)  # the store is behind: stop taking input, as the pipeline does
            self.counts.store_wait_s += time.perf_counter() - t0

    def finish(self) -> None:
        """Flush the engine and wait until the writer has stored everything."""
        self.stage.finish()
        self.writer.close()

    def close(self) -> None:
        self.store.close()


def run_tickpipe(
    chunks: Iterable[list[bytes]],
    db_path: Path,
    symbols: list[str],
    intervals: list[str],
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PathCounts:
    """Feed every chunk through the tickpipe path and wait for the final flush."""
    path = TickpipePath(db_path, symbols, intervals, threads)
    try:
        for chunk in chunks:
            path.feed(chunk)
            if progress is not None:
                progress(path.counts.frames)
        path.finish()
    finally:
        path.close()
    return path.counts
