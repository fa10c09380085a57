"""One measurement in its own process: `python -m tickpipe.bench.worker '<json job>'`.

A fresh process per path keeps the measurements apart: each is pinned to its CPU set before
anything heavy is imported, its peak RSS is its own, and no path warms caches or the allocator
for the next. The result goes to stdout as one JSON object; progress
goes to stderr.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

PATHS = ("read", "naive", "tickpipe")


def peak_rss_mb() -> float:
    """Peak resident memory of this process image so far, in MiB.

    Linux keeps `ru_maxrss` across exec, so a worker started by a large parent would report
    the parent's size; `VmHWM` (the high-water mark of this image) is read instead where it
    exists, and `ru_maxrss` (KiB on Linux) elsewhere.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _progress(label: str, total: int) -> Callable[[int], None]:
    """A callback printing to stderr about every tenth of the input."""
    step = max(1, total // 10)
    state = {"next": step, "t0": time.perf_counter()}

    def report(done: int) -> None:
        if done >= state["next"] or done == total:
            state["next"] = (done // step + 1) * step
            elapsed = time.perf_counter() - state["t0"]
            rate = done / elapsed if elapsed > 0 else 0.0
            print(f"    {label}: {done:>11,} / {total:,} trades  ({rate:,.0f}/s)",
                  file=sys.stderr, flush=True)  # fmt: skip

    return report


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one path as `job` describes and return its figures."""
    cpus = job.get("cpus")
    if cpus:
        os.sched_setaffinity(0, set(cpus))
    from tickpipe.bench.framefile import read_chunks
    from tickpipe.engine.windows import parse_window

    path = job["path"]
    frames = Path(job["frames"])
    total = int(job["trades"])
    label = job.get("label", path)
    progress = _progress(label, total) if job.get("progress", True) else None
    result: dict[str, Any] = {"path": path, "cpus": sorted(os.sched_getaffinity(0))}
    if path == "read":
        t0, cpu = time.perf_counter(), _CpuClock()
        n = sum(len(chunk) for chunk in read_chunks(frames))
        result.update(trades=n, seconds=time.perf_counter() - t0, **cpu.figures())
    elif path == "naive":
        from tickpipe.bench.naive import run_naive

        windows = tuple(parse_window(w) for w in job["intervals"])
        result["rss_before_mb"] = peak_rss_mb()
        t0, cpu = time.perf_counter(), _CpuClock()
        n = run_naive(read_chunks(frames), Path(job["db"]), windows, progress)
        result.update(trades=n, seconds=time.perf_counter() - t0, **cpu.figures())
        result.update(_sqlite_counts(Path(job["db"])))
    elif path == "tickpipe":
        result.update(_run_tickpipe(job, read_chunks(frames), progress))
    else:
        raise ValueError(f"unknown path {path!r} (one of {', '.join(PATHS)})")
    result["peak_rss_mb"] = peak_rss_mb()
    result["trades_per_s"] = result["trades"] / result["seconds"] if result["seconds"] else 0.0
    trades = result["trades"]
    result["cpu_us_per_trade"] = result["cpu_s"] / trades * 1e6 if trades else 0.0
    return result


def _cpu_s() -> float:
    """CPU seconds this process has used (user and system, every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class _CpuClock:
    """The CPU time of a measured span: the whole process's, and the calling (main) thread's
    alone, so that a loaded machine's share of the wall time does not count."""

    def __init__(self) -> None:
        self.process0 = _cpu_s()
        self.thread0 = time.thread_time()

    def figures(self) -> dict[str, float]:
        return {"cpu_s": _cpu_s() - self.process0, "main_cpu_s": time.thread_time() - self.thread0}


def _run_tickpipe(
    job: dict[str, Any], chunks: Iterator[list[bytes]], progress: Callable[[int], None] | None
) -> dict[str, Any]:
    from tickpipe.allocator import limit_retained_memory
    from tickpipe.bench.frames import binance_symbols
    from tickpipe.bench.tickpipe_path import TickpipePath

    limit_retained_memory()  # as `tickpipe` itself runs (cli.main)
    symbols = binance_symbols(int(job["symbols"]))
    profiler = _ThreadProfiles() if job.get("profile") else None
    if profiler is not None:
        profiler.start()  # before the writer thread starts, so that it is profiled too
    tp = TickpipePath(Path(job["db"]), symbols, job["intervals"], job.get("threads"))
    out: dict[str, Any] = {"db_threads": job.get("threads"), "rss_before_mb": peak_rss_mb()}
    try:
        t0, cpu = time.perf_counter(), _CpuClock()
        for chunk in chunks:
            tp.feed(chunk)
            if progress is not None:
                progress(tp.counts.frames)
        tp.finish()
        out["seconds"] = time.perf_counter() - t0
        out.update(cpu.figures())
        if profiler is not None:
            out["profile"] = profiler.stop(int(job.get("profile_top", 10)))
        totals = tp.store.totals()
        out["stored_trades"] = totals["stored_trades"]
        out["stored_candles"] = totals["stored_candles"]
        t1 = time.perf_counter()
    finally:
        tp.close()
    out["store_close_s"] = time.perf_counter() - t1
    counts = tp.counts
    out.update(trades=counts.trades, frames=counts.frames, rejected=counts.rejected,
               late=counts.late, duplicates=counts.duplicates,
               candle_updates=counts.candle_updates, store_wait_s=counts.store_wait_s)  # fmt: skip
    return out


def _sqlite_counts(db: Path) -> dict[str, int]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        (trades,) = con.execute("SELECT count(*) FROM trades").fetchone()
        (candles,) = con.execute("SELECT count(*) FROM candles").fetchone()
    finally:
        con.close()
    return {"stored_trades": trades, "stored_candles": candles}


class _ThreadProfiles:
    """cProfile of the measuring thread and of every thread started while it runs.

    cProfile only sees the thread that enables it; the store writer is a thread, so each new
    thread enables its own profiler on its first profiled event. Times are each thread's CPU
    time: on one core, wall time would charge each thread for the other's turns on the CPU.
    """

    def __init__(self) -> None:
        import cProfile

        self._new = lambda: cProfile.Profile(time.thread_time)
        self.main = self._new()
        self.threads: list[tuple[str, Any]] = []

    def start(self) -> None:
        import sys as _sys
        import threading

        def first_event(*_args: object) -> None:
            _sys.setprofile(None)
            prof = self._new()
            self.threads.append((threading.current_thread().name, prof))
            prof.enable()

        threading.setprofile(first_event)
        self.main.enable()

    def stop(self, top: int) -> dict[str, dict[str, Any]]:
        """Per thread: its total CPU seconds and the `top` functions by own CPU time."""
        import threading

        self.main.disable()
        threading.setprofile(None)
        out = {"main": _top(self.main, top)}
        for name, prof in self.threads:
            out[name] = _top(prof, top)
        return out


def _top(profile: Any, top: int) -> dict[str, Any]:
    import pstats

    stats = pstats.Stats(profile)
    rows = []
    for (filename, line, func), (cc, nc, tt, ct, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = func if filename == "~" else f"{_short(filename)}:{line}({func})"
        rows.append({"function": where, "calls": nc, "primitive_calls": cc,
                     "tottime": tt, "cumtime": ct})  # fmt: skip
    rows.sort(key=lambda r: r["tottime"], reverse=True)
    return {"cpu_s": sum(r["tottime"] for r in rows), "top": rows[:top]}


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/src/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> None:
    job = json.loads(sys.argv[1])
    print(json.dumps(run_job(job)), flush=True)


if __name__ == "__main__":
    main()
