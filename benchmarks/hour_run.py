"""Memory and restart after a long run: `tickpipe demo` at 50,000 trades/s for an hour.

    python benchmarks/hour_run.py --minutes 60 --rate 50000 --restarts 3

Starts `tickpipe demo` (its API on, as a user runs it) on a fresh data dir and samples its
resident memory (VmRSS) every `--every` seconds for `--minutes`, printing the samples and the
trend (MB per 10 minutes over the second half, when the windows and the remembered trade ids
of the correction horizon are full). Then it SIGKILLs the demo and restarts it `--restarts`
times on the same data dir, as after a crash: each start reports the time from process start
until `GET /api/health` answers, the CPU time by then, and the peak RSS (VmHWM) over the first
`--settle` seconds of the restarted run (the catch-up after a restart is when the queue fills).
Restarts are measured the way `benchmarks/restart.py` measures them.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from restart import cpu_s, peak_rss_mb, spread, start_demo, status_mb


def stored_trades(port: int) -> int:
    """The sum of `tickpipe_trades_stored_total` over every instrument, from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        lines = answer.read().decode().splitlines()
    return sum(
        int(float(line.split()[-1]))
        for line in lines
        if line.startswith("tickpipe_trades_stored_total{")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=50_000.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after each restart")
    parser.add_argument("--dir", default=None, help="where the data dir goes (default: /tmp)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        data_dir = Path(tmp)
        proc, port, _ = start_demo(data_dir, args.rate)
        started = time.monotonic()
        samples: list[tuple[float, float]] = []
        print("s\tRSS MB\tstored trades\tload", flush=True)
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            time.sleep(args.every)
            elapsed = time.monotonic() - started
            samples.append((elapsed, status_mb(proc.pid, "VmRSS")))
            print(f"{elapsed:.0f}\t{samples[-1][1]:.0f}\t{stored_trades(port):,}\t"
                  f"{os.getloadavg()[0]:.2f}", flush=True)  # fmt: skip
        stored = stored_trades(port)
        peak = peak_rss_mb(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        second_half = [(t, r) for t, r in samples if t >= samples[-1][0] / 2]
        trend = "too few samples for a trend"
        if len(second_half) >= 2:
            slope = statistics.linear_regression(*zip(*second_half, strict=True)).slope
            trend = f"RSS trend over the second half {slope * 600:+.1f} MB per 10 min"
        rate = stored / (args.minutes * 60)
        print(f"after {args.minutes:g} min: {stored:,} trades stored ({rate:,.0f}/s); "
              f"peak RSS {peak:.0f} MB; {trend}")  # fmt: skip
        live, cpu, peaks = [], [], []
        for run in range(args.restarts):
            proc, port, live_s = start_demo(data_dir, args.rate)
            cpu.append(cpu_s(proc.pid))
            live.append(live_s)
            time.sleep(args.settle)
            peaks.append(peak_rss_mb(proc.pid))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            print(f"  restart {run + 1}: live in {live_s:.2f} s, CPU by then {cpu[-1]:.2f} s, "
                  f"peak RSS over {args.settle:g} s {peaks[-1]:.0f} MB", flush=True)  # fmt: skip
        print(f"restart after the long run (min / median / max of {args.restarts}): "
              f"start to live {spread(live, 's')}, CPU by then {spread(cpu, 's')}, "
              f"peak RSS {spread(peaks, 'MB')}")  # fmt: skip


if __name__ == "__main__":
    main()
