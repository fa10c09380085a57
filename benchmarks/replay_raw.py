"""replay-raw throughput in trades/s against `tickpipe bench`'s path, and what recording costs.

    python benchmarks/replay_raw.py                  # 500,000 frames over 1,000 symbols
    python benchmarks/replay_raw.py --trades 2000000 --symbols 1000

The input is `tickpipe bench`'s: raw Binance combined-stream trade frames generated once (not
timed) and read back in chunks of `--chunk` frames. Three figures, each on the same frames:

1. **bench path**: `tickpipe bench`'s tickpipe path (`bench.tickpipe_path.run_tickpipe`:
   `parse_frames`, the engine stage, the store writer thread, a DuckDB file).
2. **record**: the same chunks handed to a `FrameRecorder` from an event loop, as
   `run --record` does per delivery (each stamped with the time a live feed would have
   received it: the market's clock, `--event-rate` trades/s): the time the event loop
   spends per chunk (the hot path's cost), and the writer thread's end-to-end rate (encode,
   zstd, write) with the bytes on disk.
3. **replay-raw**: `history.replay_raw.replay_raw` over that recording into a fresh DuckDB file
   (decompress, decode the JSON lines, rebuild the Binance connector, `parse` and
   `hand_on_parsed` per delivery, the engine stage, the store writer).

Each path runs `--repeat` times (default 2) and its best run counts. Each figure is trades
stored per second of wall time in this process (2 cores are shared with
whatever else runs: run it on an idle machine, and more than once). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from tickpipe.bench.framefile import read_chunks
from tickpipe.bench.frames import FrameFile, binance_symbols, write_frames
from tickpipe.bench.tickpipe_path import run_tickpipe
from tickpipe.config import Config
from tickpipe.history.recording import FrameRecorder, RecordedSource
from tickpipe.history.replay_raw import replay_raw
from tickpipe.sources.binance import INFO, make_source
from tickpipe.sources.registry import ExchangeOptions

INTERVALS = ["1s", "5s", "1m", "5m", "1h"]


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


async def _record(source: FrameFile, recorder: FrameRecorder) -> tuple[int, float, float]:
    """Hand every chunk to the recorder as a connection would, received as a live feed would
    have received it (the market's clock: `event_rate` trades/s); (frames, loop seconds,
    worst single hand-over in seconds)."""
    frames, spent, worst = 0, 0.0, 0.0
    for chunk in read_chunks(source.path):
        received = source.first_ts + round((frames + len(chunk)) / source.event_rate * 1e6)
        started = time.perf_counter()
        await recorder.frames_received("binance", received, 0, 1, chunk)
        took = time.perf_counter() - started
        spent += took
        worst = max(worst, took)
        frames += len(chunk)
    return frames, spent, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=500_000)
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--chunk", type=int, default=2_000)
    parser.add_argument("--event-rate", type=float, default=100_000.0)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each path; the best counts")
    args = parser.parse_args()
    symbols = binance_symbols(args.symbols)
    with tempfile.TemporaryDirectory(prefix="tickpipe-replay-bench-") as tmp:
        root = Path(tmp)
        say(f"generating {args.trades:,} frames over {args.symbols:,} symbols ...")
        frames = write_frames(
            root / "frames.bin", args.trades, args.symbols, args.event_rate, args.chunk
        )

        bench_s = float("inf")
        for n in range(args.repeat):  # the best of each: the first run also warms caches up
            say(f"bench path, run {n + 1} ...")
            started = time.perf_counter()
            db = root / f"bench-{n}.duckdb"
            counts = run_tickpipe(read_chunks(frames.path), db, symbols, INTERVALS)
            bench_s = min(bench_s, time.perf_counter() - started)

        say("recording ...")
        source = make_source(symbols, ExchangeOptions())
        recorder = FrameRecorder(root / "raw")
        recorder.add(RecordedSource(
            "binance", "binance", None, INFO.endpoints.url,
            [(i.exchange, i.symbol, i.raw_symbol) for i in source.instruments],  # type: ignore[attr-defined]
        ))  # fmt: skip
        recorder.start()
        started = time.perf_counter()
        recorded, loop_s, worst_s = asyncio.run(_record(frames, recorder))
        recorder.close()
        record_s = time.perf_counter() - started

        report = None
        for n in range(args.repeat):
            say(f"replay-raw, run {n + 1} ...")
            config = Config(data_dir=str(root / f"replayed-{n}"), intervals=INTERVALS)
            run = asyncio.run(replay_raw(config, root / "raw"))
            if report is None or run.seconds < report.seconds:
                report = run
        assert report is not None

    chunks = -(-recorded // args.chunk)
    print(f"frames: {args.trades:,} Binance trade frames over {args.symbols:,} symbols, chunks "
          f"of {args.chunk:,}, intervals {' '.join(INTERVALS)}")  # fmt: skip
    print(f"bench path:  {counts.trades:>10,} trades stored in {bench_s:6.2f}s = "
          f"{counts.trades / bench_s:>10,.0f} trades/s ({counts.candle_updates:,} candle "
          "updates)")  # fmt: skip
    rate = report.trades / report.seconds
    ratio = rate / (counts.trades / bench_s)
    print(f"replay-raw:  {report.trades:>10,} trades stored in {report.seconds:6.2f}s = "
          f"{rate:>10,.0f} trades/s ({ratio:.2f}x the bench path; {report.candles:,} candle "
          "updates)")  # fmt: skip
    print(f"record:      {recorded:>10,} frames; event loop {loop_s * 1e6 / chunks:,.1f} µs per "
          f"chunk of {args.chunk:,} ({loop_s * 1e9 / max(recorded, 1):,.0f} ns per frame, worst "
          f"hand-over {worst_s * 1e3:,.2f} ms, {recorder.waits:,} waits for a full queue); "
          f"writer thread {recorded / record_s:,.0f} frames/s end to end, "
          f"{recorder.bytes_written:,} bytes on disk "
          f"({recorder.bytes_written / max(recorded, 1):.1f} bytes per frame)")  # fmt: skip


if __name__ == "__main__":
    main()
