"""`tickpipe run --replay FILE --speed 0`: peak RSS, CPU and trades/s on a 2M-trade file.

    python benchmarks/replay_memory.py                        # 2M trades, Parquet and JSONL
    python benchmarks/replay_memory.py --trades 2000000 --formats parquet --runs 3

Writes `--trades` simulated trades (`--symbols` instruments, consecutive numeric ids as
exchanges send them) once per format with `write_trades` (not measured), then per run starts
`tickpipe run --replay FILE --speed 0 --no-serve --quiet` as its own process on a fresh data
dir, and reads that process's peak RSS (VmHWM, polled every 50 ms until it ends: Linux keeps
ru_maxrss across fork and exec, so a parent's size would show) and its CPU time (user +
system, from `os.wait4`: the figure that holds on a busy machine). It also times the file
reader alone (`FileReplay` emitting into a no-op: read, check, convert). Writing the file and
timing the reader run in child processes, so that this one stays small. Printed: min /
median / max over the runs. Nothing is asserted.

`--baseline REF` also runs the tickpipe of git ref REF (its `src`, extracted with git archive)
on the same file, alternating with this checkout's run by run, and prints each figure of this
one as a ratio of the baseline's:

    python benchmarks/replay_memory.py --formats parquet --runs 3 --baseline 172ec10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from baseline import baseline_src, env_running  # benchmarks/baseline.py

T0 = 1_700_000_000_000_000


def spread(values: list[float], unit: str, digits: int = 0) -> str:
    v = [f"{x:.{digits}f}" for x in (min(values), statistics.median(values), max(values))]
    return f"{' / '.join(v)} {unit}"


def peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def replay_run(
    path: Path, data_dir: Path, env: dict[str, str] | None = None
) -> tuple[float, float, float]:
    """(peak RSS MB, CPU s, wall s) of one `tickpipe run --replay` to the end of the file,
    with the tickpipe `env` imports (default: this process's)."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tickpipe", "run", "--replay", str(path), "--speed", "0",
         "--no-serve", "--quiet", "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip
    peak = 0.0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        with contextlib.suppress(OSError):  # it ended between the two calls
            peak = max(peak, peak_mb(proc.pid))
        time.sleep(0.05)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"tickpipe run --replay ended with {proc.returncode}: {err[-500:]}")
    return peak, usage.ru_utime + usage.ru_stime, wall


def reader_cpu_s(path: Path) -> float:
    """CPU seconds of the file reader alone: every chunk read, checked, converted, emitted."""
    from tickpipe.records import TradeBatch
    from tickpipe.sources import SourceContext
    from tickpipe.sources.replay import FileReplay

    async def emit(batch: TradeBatch) -> None:
        return None

    start = time.process_time()
    asyncio.run(FileReplay(path, speed=None).run(SourceContext(emit=emit)))
    return time.process_time() - start


def write_file(path: Path, trades: int, symbols: int) -> None:
    from tickpipe.sources.replay import write_trades
    from tickpipe.sources.simulated import SimulatedMarket

    write_trades(path, SimulatedMarket(symbols=symbols, seed=1, start_seq=1).generate(trades, T0))


def child(*args: str, env: dict[str, str] | None = None) -> str:
    """This script's `--child` mode in a new process: its one line of output."""
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         stdout=subprocess.PIPE, text=True, env=env).stdout  # fmt: skip
    return out.strip()


@dataclass
class Runs:
    """One tickpipe's figures over the runs (the wall time is only printed per run)."""

    peaks: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    readers: list[float] = field(default_factory=list)

    def add(self, peak: float, cpu: float, reader: float) -> None:
        self.peaks.append(peak)
        self.cpus.append(cpu)
        self.readers.append(reader)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trades", type=int, default=2_000_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--formats", default="parquet,jsonl")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--dir", default=None, help="where the files go (default: /tmp)")
    parser.add_argument(
        "--baseline", default=None, metavar="REF",
        help="also run the tickpipe of this git ref (its src/, via git archive) on each file",
    )  # fmt: skip
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "write":
            write_file(Path(args.child[1]), args.trades, args.symbols)
        else:
            print(reader_cpu_s(Path(args.child[1])))
        return
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        variants: dict[str, dict[str, str] | None] = {"current": None}
        if args.baseline:
            src = baseline_src(args.baseline, Path(tmp))
            variants = {args.baseline: env_running(src), **variants}
        for fmt in args.formats.split(","):
            path = Path(tmp) / f"trades.{fmt}"
            child("write", str(path), "--trades", str(args.trades), "--symbols", str(args.symbols))
            runs = {label: Runs() for label in variants}
            for run in range(args.runs):
                for label, env in variants.items():
                    with tempfile.TemporaryDirectory(dir=args.dir) as data_dir:
                        peak, cpu, wall = replay_run(path, Path(data_dir), env)
                    reader = float(child("reader", str(path), env=env))
                    runs[label].add(peak, cpu, reader)
                    print(f"  {fmt} run {run + 1} ({label}): peak RSS {peak:.0f} MB, CPU "
                          f"{cpu:.1f} s, wall {wall:.1f} s, reader alone {reader:.2f} s CPU",
                          flush=True)  # fmt: skip
            for label, r in runs.items():
                rates = [args.trades / c for c in r.cpus]
                print(f"{fmt} ({label}), {args.trades:,} trades over {args.symbols} symbols (min "
                      f"/ median / max of {args.runs}): peak RSS {spread(r.peaks, 'MB')}, CPU "
                      f"{spread(r.cpus, 's', 1)} ({spread(rates, 'trades per CPU-second')}), "
                      f"reader alone {spread(r.readers, 's CPU', 2)}; load "
                      f"{os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
            if args.baseline:
                base, now = runs[args.baseline], runs["current"]
                ratios = [
                    statistics.median(a) / statistics.median(b)
                    for a, b in (
                        (now.peaks, base.peaks),
                        (now.cpus, base.cpus),
                        (now.readers, base.readers),
                    )
                ]
                print(f"{fmt}: current / {args.baseline}, medians: peak RSS {ratios[0]:.2f}x, CPU "
                      f"{ratios[1]:.2f}x, reader {ratios[2]:.2f}x", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
