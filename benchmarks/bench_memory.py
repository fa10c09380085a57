"""Peak RSS and CPU of `tickpipe bench`'s tickpipe path alone, without the naive baseline.

    python benchmarks/bench_memory.py                       # 2M trades, 1,000 symbols, 3 runs
    python benchmarks/bench_memory.py --trades 2000000 --symbols 1000 --runs 3

The frames are `tickpipe bench`'s (`bench.frames.write_frames`, written once, not measured);
each run is the bench's own worker process (`python -m tickpipe.bench.worker`, the tickpipe
path: `parse_frames`, the engine, the store writer, a DuckDB file, tickpipe's default 5
intervals), pinned to one CPU. Its peak RSS is the figure `tickpipe bench` reports; CPU
(user + system, from `os.wait4`) is the figure that holds on a busy machine. Printed:
min / median / max over the runs. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tickpipe.bench.frames import write_frames
from tickpipe.config import Config


def spread(values: list[float], unit: str, digits: int = 0) -> str:
    v = [f"{x:,.{digits}f}" for x in (min(values), statistics.median(values), max(values))]
    return f"{' / '.join(v)} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    cpu = max(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        frames = write_frames(Path(tmp) / "frames.bin", args.trades, args.symbols, 1e6, 20_000, 0)
        peaks, cpus = [], []
        for run in range(args.runs):
            db = Path(tmp) / f"tickpipe-{run}.duckdb"
            job = {"frames": str(frames.path), "trades": frames.trades, "symbols": frames.symbols,
                   "intervals": list(Config().intervals), "path": "tickpipe", "cpus": [cpu],
                   "threads": 1, "db": str(db), "progress": False}  # fmt: skip
            proc = subprocess.Popen([sys.executable, "-m", "tickpipe.bench.worker",
                                     json.dumps(job)], stdout=subprocess.PIPE)  # fmt: skip
            out = proc.stdout.read() if proc.stdout else b""
            _, status, usage = os.wait4(proc.pid, 0)
            if os.waitstatus_to_exitcode(status):
                raise SystemExit(f"the bench worker failed ({status})")
            result = json.loads(out.decode().strip().splitlines()[-1])
            peaks.append(result["peak_rss_mb"])
            cpus.append(usage.ru_utime + usage.ru_stime)
            print(f"  run {run + 1}: peak RSS {peaks[-1]:.0f} MB (after start-up "
                  f"{result['rss_before_mb']:.0f} MB), CPU {cpus[-1]:.1f} s, "
                  f"{result['stored_trades']:,} trades stored", flush=True)  # fmt: skip
    rates = [args.trades / c for c in cpus]
    print(f"{args.trades:,} trades, {args.symbols:,} symbols x {len(Config().intervals)} "
          f"intervals (min / median / max of {args.runs}): peak RSS {spread(peaks, 'MB')}, "
          f"CPU {spread(cpus, 's', 1)} ({spread(rates, 'trades per CPU-second')}); "
          f"load {os.getloadavg()[0]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
