"""Where `tickpipe bench`'s tickpipe path spends its CPU, stage by stage, per trade.

    python benchmarks/bench_stages.py                      # 2M trades, 1,000 symbols, 3 runs
    python benchmarks/bench_stages.py --trades 1000000 --runs 5 --cpu 1

The bench's frames (`bench.frames.write_frames`, written once, not measured) go through the
bench's own `TickpipePath` (the engine stage and store writer of `tickpipe run`, tickpipe's
default 5 intervals, a DuckDB file) in this process, pinned to one CPU, with each stage timed
on the stepping thread's CPU clock (`time.thread_time`): reading a chunk of frames, decoding
it (`parse_frames`), the engine step with its hand-over to the writer, the idle tick. The
store writer is a thread of its own: its share is the process's CPU minus the stepping
thread's. This says which thread is the critical path on two cores (the stepping thread's
total is the most a second core cannot take off it). Printed: CPU µs per trade, min / median
/ max over the runs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

STAGES = ("read", "decode", "engine", "tick")


def one_run(frames: Path, symbols: int, db: Path) -> dict[str, float]:
    """CPU seconds of each stage on the stepping thread, of the whole process, and wall."""
    from tickpipe.bench.framefile import read_chunks
    from tickpipe.bench.frames import binance_symbols
    from tickpipe.bench.tickpipe_path import TickpipePath
    from tickpipe.config import Config
    from tickpipe.runtime.clock import now_us
    from tickpipe.sources.binance.parse import parse_frames

    path = TickpipePath(db, binance_symbols(symbols), list(Config().intervals), threads=1)
    spent = dict.fromkeys(STAGES, 0.0)
    clock = time.thread_time
    process0, wall0 = time.process_time(), time.perf_counter()
    try:
        chunks = read_chunks(frames)
        while True:
            t0 = clock()
            chunk = next(chunks, None)
            t1 = clock()
            spent["read"] += t1 - t0
            if chunk is None:
                break
            batch, *_ = parse_frames(chunk, now_us(), path.index)
            t2 = clock()
            path.stage.process(batch)
            t3 = clock()
            path.stage.tick()
            spent["decode"] += t2 - t1
            spent["engine"] += t3 - t2
            spent["tick"] += clock() - t3
            while path.stage.behind:
                time.sleep(0.005)  # the store is behind: stop taking input, as the bench does
        path.finish()
    finally:
        path.close()
    stepping = sum(spent.values())
    process = time.process_time() - process0
    return {**spent, "stepping thread": stepping, "store writer (the rest)": process - stepping,
            "process": process, "wall": time.perf_counter() - wall0}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cpu", type=int, default=None, help="default: the highest allowed")
    args = parser.parse_args()
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0)) if args.cpu is None else args.cpu})
    from tickpipe.allocator import limit_retained_memory
    from tickpipe.bench.frames import write_frames

    limit_retained_memory()  # as `tickpipe` itself runs
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        frames = write_frames(Path(tmp) / "frames.bin", args.trades, args.symbols, 1e6)
        for run in range(args.runs):
            runs.append(one_run(frames.path, args.symbols, Path(tmp) / f"run-{run}.duckdb"))
            rate = args.trades / runs[-1]["wall"]
            print(f"  run {run + 1}: {rate:,.0f} trades/s", flush=True)
    load = os.getloadavg()[0]
    print(f"{args.trades:,} trades, {args.symbols:,} symbols x 5 intervals, one core; CPU µs "
          f"per trade, min / median / max of {args.runs}; load {load:.2f}")  # fmt: skip
    for name in runs[0]:
        values = [r[name] / args.trades * 1e6 for r in runs]
        spread = (min(values), statistics.median(values), max(values))
        print(f"  {name:<26} {' / '.join(f'{v:.3f}' for v in spread)}")


if __name__ == "__main__":
    main()
