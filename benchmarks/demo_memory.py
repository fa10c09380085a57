"""RSS of a running demo over time, and how much of it is DuckDB's buffer pool.

    python benchmarks/demo_memory.py --minutes 4 --rate 50000

Runs the embedded pipeline of `tickpipe demo` (simulated market, engine, DuckDB store; no
API) in this process for `--minutes`, and every `--every` seconds prints the process's RSS,
DuckDB's own memory (`duckdb_memory()`: its buffer pool and what its queries hold), the
engine's windows and remembered trade ids, the trades stored so far, and the size of the
stored engine snapshot. The RSS growth per stored trade, extrapolated to an hour at `--rate`, says
whether the memory bound holds; the DuckDB column says whether its `memory_limit` matters.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

from tickpipe.allocator import limit_retained_memory
from tickpipe.config import Config
from tickpipe.runners.embedded import Pipeline
from tickpipe.sources.simulated import SimulatedMarket


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=50_000.0)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--every", type=float, default=20.0, help="seconds between samples")
    args = parser.parse_args()
    limit_retained_memory()  # as `tickpipe demo` itself runs (cli.main)
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(data_dir=tmp)
        pipeline = Pipeline(config, [SimulatedMarket(args.symbols, args.rate)], "demo")
        pipeline.restore()
        done = threading.Event()

        def sample() -> None:
            started = time.monotonic()
            print("s\tRSS MB\tDuckDB MB\twindows\tids held\tstored trades\tsnapshot MB")
            while not done.wait(args.every):
                query = pipeline.store.query  # type: ignore[attr-defined]
                duck = query("SELECT sum(memory_usage_bytes) FROM duckdb_memory()")[0][0]
                stored = query("SELECT octet_length(data) FROM engine_snapshot WHERE part = ?",
                               ["state"])  # fmt: skip
                snapshot_mb = stored[0][0] / 1e6 if stored else 0.0
                engine = pipeline.engine
                windows = sum(len(t) for t in engine.tables)
                written = pipeline.writer.written_trades
                print(f"{time.monotonic() - started:.0f}\t{rss_mb():.0f}\t{duck / 1e6:.0f}\t"
                      f"{windows:,}\t{engine.remembered_trades():,}\t{written:,}\t"
                      f"{snapshot_mb:.1f}", flush=True)  # fmt: skip

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            asyncio.run(pipeline.run(duration=args.minutes * 60))
        finally:
            done.set()
            pipeline.close()


if __name__ == "__main__":
    main()
