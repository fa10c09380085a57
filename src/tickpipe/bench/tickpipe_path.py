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
from dataclasses import dataclass
from pathlib import Path

from tickpipe.config import Config
from tickpipe.engine.candles import CandleEngine, EngineOutput
from tickpipe.engine.windows import parse_duration
from tickpipe.pipeline import TICK_SECONDS, StoreWriter, now_us
from tickpipe.sources.binance.parse import InstrumentIndex, parse_frames
from tickpipe.stores.duckdb import DuckDBStore


@dataclass
class PathCounts:
    """What went through: every frame should end up as an accepted, stored trade."""

    frames: int = 0
    trades: int = 0
    rejected: int = 0
    late: int = 0
    duplicates: int = 0
    candle_updates: int = 0


class TickpipePath:
    """The engine loop of `Pipeline`, fed chunk by chunk from the caller's thread."""

    def __init__(
        self, db_path: Path, symbols: list[str], intervals: list[str], threads: int | None
    ) -> None:
        config = Config(intervals=list(intervals))
        self.index = InstrumentIndex.for_symbols(symbols)
        self.engine = CandleEngine(config.engine_config())
        self.store = DuckDBStore(db_path, threads=threads)
        self.writer = StoreWriter(self.store, parse_duration(config.flush_every) / 1e6)
        self.counts = PathCounts()
        self._next_tick = time.monotonic() + TICK_SECONDS

    def feed(self, frames: list[bytes]) -> None:
        """One chunk, as a WebSocket reader hands it over."""
        batch, rejects = parse_frames(frames, now_us(), self.index)
        self.counts.frames += len(frames)
        self.counts.rejected += len(rejects)
        self._apply(self.engine.process(batch, now_us()))
        if time.monotonic() >= self._next_tick:
            self._next_tick = time.monotonic() + TICK_SECONDS
            self._apply(self.engine.tick(now_us()))
        writer = self.writer
        while writer.pending > writer.max_pending and writer.error is None:
            time.sleep(0.005)  # the store is behind: stop taking input, as the pipeline does

    def finish(self) -> None:
        """Flush the engine and wait until the writer has stored everything."""
        self.writer.submit(candles=self.engine.flush(now_us()))
        self.writer.close()

    def close(self) -> None:
        self.store.close()

    def _apply(self, out: EngineOutput) -> None:
        counts = self.counts
        counts.duplicates += out.duplicates
        counts.candle_updates += len(out.candles)
        if out.late is not None:
            counts.late += len(out.late)
        if out.accepted is not None:
            counts.trades += len(out.accepted)
        if out.accepted is not None or out.candles or out.rolling:
            self.writer.submit(out.accepted, out.candles, out.rolling)


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
