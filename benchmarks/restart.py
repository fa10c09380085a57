"""Restart cost against store size: the engine snapshot against the replay of the horizon.

    python benchmarks/restart.py                         # 1M and 10M trades, three runs each
    python benchmarks/restart.py --sizes 1e6,10e6,25e6 --runs 3 --rate 50000

For each size a DuckDB data dir is filled with that many trades (`--instruments` of them,
consecutive ids per instrument, spread over the last 55 minutes: inside the default
correction horizon of 1 h, so a replay restart reads every one). Then, per run:

1. replay: the stored engine snapshot is deleted and `tickpipe demo --rate R` starts, so it
   restores by re-running every stored trade of the horizon through the engine (tickpipe's
   restart before snapshots); once its API answers it runs 3 s more and is killed (SIGKILL);
2. snapshot: `tickpipe demo` starts again on the same data dir, now holding the snapshot the
   first run kept (at most `snapshot_every` old at the kill), and is killed the same way.

Each start reports the time from process start until `GET /api/health` answers (the API
serves only once the restore is done), the process's CPU time by then (user + system: the
figure that holds on a busy machine) and its peak RSS by then (VmHWM). The
snapshot's size and the time to take one and to write it into a DuckDB file are measured in
this process on the snapshot the data dir holds at the end. Printed: min / median / max over
the runs. Needs a few GB of free disk under --dir for 25M trades; run it on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import duckdb

from tickpipe.config import Config
from tickpipe.engine.candles import CandleEngine
from tickpipe.engine.snapshot import load_snapshot, take_snapshot
from tickpipe.runtime.writer import STATE
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.flush import Flush

S = 1_000_000
SPREAD_S = 55 * 60


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def fill(data_dir: Path, trades: int, instruments: int) -> None:
    """`trades` trades over the last 55 minutes, in the demo's schema (not its instruments)."""
    DuckDBStore(data_dir / "tickpipe.duckdb").close()  # the schema
    con = duckdb.connect(str(data_dir / "tickpipe.duckdb"))
    now = time.time_ns() // 1000
    con.execute(
        "INSERT INTO trade_rows SELECT 'filled', 'filled', 'F' || (i % $k) || '-USD', "
        "'F' || (i % $k) || 'USD', NULL, i // $k, 100 + (i % 97) * 0.01, 1.0, "
        "CASE WHEN i % 2 = 0 THEN 'buy' ELSE 'sell' END, "
        "$now - ($n - i) * $step, $now - ($n - i) * $step FROM range($n) t(i)",
        {"now": now, "n": trades, "k": instruments, "step": SPREAD_S * S / trades},
    )
    con.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status_mb(pid: int, field: str) -> float:
    """A memory figure of /proc/PID/status in MB: VmRSS (now) or VmHWM (the peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return status_mb(pid, "VmHWM")


def cpu_s(pid: int) -> float:
    """User + system CPU time of the process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_demo(data_dir: Path, rate: float) -> tuple[subprocess.Popen, int, float]:
    """`tickpipe demo` on a free port; (process, port, seconds until its API answered: the
    API serves only once the restore is done)."""
    port = free_port()
    log = data_dir / "benchmark-demo.stderr"  # a file: a pipe nobody reads would fill
    started = time.monotonic()
    with log.open("ab") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "demo", "--quiet", "--rate", str(rate),
             "--port", str(port), "--data-dir", str(data_dir)],
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"tickpipe demo ended: {log.read_text()[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1):
                return proc, port, time.monotonic() - started
        except OSError:
            time.sleep(0.02)


def start_to_live(data_dir: Path, rate: float) -> tuple[float, float, float]:
    """Start `tickpipe demo`, wait for its API; (seconds to live, CPU seconds by then, peak
    RSS MB); then kill -9 it."""
    proc, _, live_s = start_demo(data_dir, rate)
    try:
        cpu, peak = cpu_s(proc.pid), peak_rss_mb(proc.pid)
        time.sleep(3.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return live_s, cpu, peak


def snapshot_costs(data_dir: Path) -> tuple[int, float, float]:
    """(bytes, ms to take, ms to write into a DuckDB file) of the stored snapshot."""
    store = DuckDBStore(data_dir / "tickpipe.duckdb")
    blob = store.load_snapshot()[STATE]
    store.close()
    engine = CandleEngine(Config().engine_config())
    load_snapshot(engine, blob, time.time_ns() // 1000)
    takes, writes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        other = DuckDBStore(Path(tmp) / "w.duckdb")
        for _ in range(3):
            t0 = time.perf_counter()
            taken = take_snapshot(engine)
            t1 = time.perf_counter()
            other.write_flush(Flush.of(snapshot={STATE: taken}))
            takes.append(t1 - t0)
            writes.append(time.perf_counter() - t1)
        other.close()
    return len(blob), statistics.median(takes) * 1e3, statistics.median(writes) * 1e3


def spread(values: list[float], unit: str) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} {unit}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1e6,10e6", help="stored trades, comma-separated")
    parser.add_argument("--instruments", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50_000.0, help="demo trades/s")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the data dirs go (default: /tmp)")
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    for size in [int(float(s)) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            data_dir = Path(tmp)
            say(f"filling {size:,} trades ...")
            fill(data_dir, size, args.instruments)
            replay, snap = [], []
            for run in range(args.runs):
                con = duckdb.connect(str(data_dir / "tickpipe.duckdb"))
                con.execute("DELETE FROM engine_snapshot")
                con.close()
                replay.append(start_to_live(data_dir, args.rate))
                snap.append(start_to_live(data_dir, args.rate))
                say(f"  run {run + 1}: replay {replay[-1]}, snapshot {snap[-1]}")
            size_b, take_ms, write_ms = snapshot_costs(data_dir)
        print(f"{size:,} stored trades (min / median / max of {args.runs} runs)")
        for name, runs in (("replay  ", replay), ("snapshot", snap)):
            print(f"  {name} start to live {spread([r[0] for r in runs], 's')}, "
                  f"CPU by then {spread([r[1] for r in runs], 's')}, "
                  f"peak RSS {spread([r[2] for r in runs], 'MB')}")  # fmt: skip
        print(f"  snapshot {size_b / 1e6:.1f} MB: take {take_ms:.0f} ms, write {write_ms:.0f} ms")


if __name__ == "__main__":
    main()
