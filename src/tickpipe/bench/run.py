"""Run the whole benchmark and gather its figures in one plain dict (what `--json` prints).

Order: generate the input (untimed), time reading it alone, then the naive baseline and
tickpipe, each in a fresh process pinned to the same CPU, then (optionally) tickpipe on more
cores, check both stores hold the same candles, and time `tickpipe demo` to its first candle.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TARGET_RATE = 600_000  # trades/s, end to end, one core (issue 19)
TARGET_RATE_2_CORES = 1_000_000  # trades/s, end to end, two cores (issue 19)
TARGET_RATIO = 5.0  # times the naive baseline on the same core
TARGET_RSS_MB = 300.0  # tickpipe's peak RSS with 1,000 symbols x 5 intervals
TARGET_FIRST_CANDLE_S = 1.0  # `tickpipe demo` start to first stored candle


@dataclass
class BenchOptions:
    """What to run; the defaults are the published benchmark."""

    trades: int = 2_000_000
    symbols: int = 1_000
    event_rate: float = 1_000_000.0
    chunk: int = 20_000
    cores: int = 1
    cpu: int | None = None
    seed: int = 0
    intervals: list[str] = field(default_factory=list)
    demo_duration: float = 5.0
    profile: int = 0  # top functions to report from a profiled tickpipe run; 0: no profile
    runs: int = 1  # how many times each tickpipe path runs (min / median / max reported)


def default_cpu() -> int:
    """The CPU to pin to: the highest one this process may use (CPU 0 takes most interrupts)."""
    return max(os.sched_getaffinity(0))


def run_bench(options: BenchOptions, say: Callable[[str], None]) -> dict[str, Any]:
    """Every measurement, in order; `say` gets one progress line per step."""
    from tickpipe.bench.compare import diff_candles, duckdb_candles, sqlite_candles
    from tickpipe.bench.first_candle import measure_first_candle
    from tickpipe.bench.frames import write_frames
    from tickpipe.config import Config

    intervals = options.intervals or list(Config().intervals)
    cpu = default_cpu() if options.cpu is None else options.cpu
    allowed = sorted(os.sched_getaffinity(0))
    if cpu not in allowed:
        raise ValueError(f"--cpu {cpu}: this process may only use CPUs {allowed}")
    steps = 6 + (options.cores > 1) + (options.profile > 0)
    step = iter(range(1, steps + 1))
    out: dict[str, Any] = {"machine": _machine(allowed)}

    with tempfile.TemporaryDirectory(prefix="tickpipe-bench-") as tmp_name:
        tmp = Path(tmp_name)
        say(f"[{next(step)}/{steps}] generating {options.trades:,} Binance trade frames for "
            f"{options.symbols:,} symbols (not timed)")  # fmt: skip
        t0 = time.perf_counter()
        frames = write_frames(
            tmp / "frames.bin", options.trades, options.symbols, options.event_rate,
            options.chunk, options.seed,
        )  # fmt: skip
        out["input"] = {
            "trades": frames.trades,
            "symbols": frames.symbols,
            "intervals": intervals,
            "event_rate": frames.event_rate,
            "event_span_s": frames.event_span_s,
            "chunk": frames.chunk,
            "frames_mb": frames.bytes / 1e6,
            "generate_s": time.perf_counter() - t0,
        }
        job = {"frames": str(frames.path), "trades": frames.trades, "symbols": frames.symbols,
               "intervals": intervals}  # fmt: skip
        out["one_core"] = {"cpu": cpu, "duckdb_threads": 1}
        paths: dict[str, Any] = {}
        out["paths"] = paths

        say(f"[{next(step)}/{steps}] reading the frames alone, pinned to CPU {cpu}")
        paths["read"] = _worker({**job, "path": "read", "cpus": [cpu]})

        say(f"[{next(step)}/{steps}] naive baseline (json.loads, dict, SQLite row by row), "
            f"pinned to CPU {cpu}")  # fmt: skip
        naive_db = tmp / "naive.sqlite"
        paths["naive"] = _worker({**job, "path": "naive", "cpus": [cpu], "db": str(naive_db),
                                  "label": "naive"})  # fmt: skip

        say(f"[{next(step)}/{steps}] tickpipe (parse_frames, CandleEngine, StoreWriter, "
            f"DuckDB threads=1), pinned to CPU {cpu}")  # fmt: skip
        tickpipe_db = tmp / "tickpipe.duckdb"
        paths["tickpipe"] = _repeated(options.runs, tmp, {
            **job, "path": "tickpipe", "cpus": [cpu], "threads": 1, "db": str(tickpipe_db),
            "label": "tickpipe"})  # fmt: skip

        if options.cores > 1:
            cpus = allowed[-options.cores :]
            say(f"[{next(step)}/{steps}] tickpipe on {len(cpus)} cores (CPUs {cpus}, "
                f"DuckDB threads={len(cpus)})")  # fmt: skip
            paths[f"tickpipe_{options.cores}_cores"] = _repeated(options.runs, tmp, {
                **job, "path": "tickpipe", "cpus": cpus, "threads": len(cpus),
                "db": str(tmp / "tickpipe-cores.duckdb"), "label": f"tickpipe {len(cpus)} cores",
            })  # fmt: skip

        say(f"[{next(step)}/{steps}] checking that both paths stored the same candles")
        a, b = duckdb_candles(tickpipe_db), sqlite_candles(naive_db)
        problems = diff_candles(a, b)
        out["same_candles"] = {
            "equal": not problems,
            "tickpipe": len(a),
            "naive": len(b),
            "differences": problems,
        }

        if options.profile:
            say(f"[{next(step)}/{steps}] profiling the tickpipe path (cProfile, figures not used)")
            profiled = _worker({**job, "path": "tickpipe", "cpus": [cpu], "threads": 1,
                                "db": str(tmp / "profiled.duckdb"), "label": "profiled",
                                "profile": True, "profile_top": options.profile})  # fmt: skip
            out["profile"] = {"seconds": profiled["seconds"], "threads": profiled["profile"]}

    say(f"[{next(step)}/{steps}] `tickpipe demo`: time from process start to the first "
        "stored candle")  # fmt: skip
    out["first_candle"] = measure_first_candle(options.demo_duration).as_dict()

    naive_rate = paths["naive"]["trades_per_s"]
    out["ratio_vs_naive"] = paths["tickpipe"]["trades_per_s"] / naive_rate if naive_rate else None
    out["targets"] = _targets(out)
    return out


def _repeated(runs: int, tmp: Path, job: dict[str, Any]) -> dict[str, Any]:
    """`job` run `runs` times, each into a new file: the run of median throughput, with every
    run's figures and the load average beside each (the machine may be shared)."""
    results = []
    for n in range(runs):
        load_before = os.getloadavg()[0]
        # The first run's file is the one compared with the naive baseline.
        one = {**job, "db": str(tmp / f"run-{n}.duckdb"), "label": f"{job['label']} #{n + 1}"}
        result = _worker(one if n else job)
        result["load_avg"] = [load_before, os.getloadavg()[0]]
        results.append(result)
        if n:
            for file in tmp.glob(f"run-{n}.duckdb*"):
                file.unlink()
    order = sorted(range(runs), key=lambda i: results[i]["trades_per_s"])
    median = dict(results[order[(runs - 1) // 2]])
    keys = ("trades_per_s", "cpu_us_per_trade", "main_cpu_s", "cpu_s", "seconds", "load_avg")
    median["runs"] = [{k: r[k] for k in keys} for r in results]
    return median


def spread(values: list[float]) -> tuple[float, float, float]:
    """(min, median, max); the median of an even count is the lower middle one (a run's)."""
    ordered = sorted(values)
    return ordered[0], ordered[(len(ordered) - 1) // 2], ordered[-1]


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter; its progress goes straight to stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "tickpipe.bench.worker", json.dumps(job)],
        stdout=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {job['path']} measurement failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    tick = out["paths"]["tickpipe"]
    first = out["first_candle"]["first_candle_s"]
    ratio = out["ratio_vs_naive"]

    def target(name: str, goal: str, measured: float | None, met: bool) -> dict[str, Any]:
        return {"name": name, "goal": goal, "measured": measured, "met": met}

    more = [k for k in out["paths"] if k.startswith("tickpipe_") and k.endswith("_cores")]
    several = []
    if more:
        rate = out["paths"][more[0]]["trades_per_s"]
        several = [
            target(f"end-to-end throughput, {more[0].split('_')[1]} cores",
                   f">= {TARGET_RATE_2_CORES:,} trades/s", rate, rate >= TARGET_RATE_2_CORES),
            target("more cores beat one core", f"> {tick['trades_per_s']:,.0f} trades/s", rate,
                   rate > tick["trades_per_s"]),
        ]  # fmt: skip
    return [
        target("end-to-end throughput, one core", f">= {TARGET_RATE:,} trades/s",
               tick["trades_per_s"], tick["trades_per_s"] >= TARGET_RATE),
        *several,
        target("speed-up over the naive baseline, same core", f">= {TARGET_RATIO:g}x",
               ratio, ratio is not None and ratio >= TARGET_RATIO),
        target("tickpipe peak RSS", f"<= {TARGET_RSS_MB:g} MB",
               tick["peak_rss_mb"], tick["peak_rss_mb"] <= TARGET_RSS_MB),
        target("`tickpipe demo` start to first stored candle", f"<= {TARGET_FIRST_CANDLE_S:g} s",
               first, first is not None and first <= TARGET_FIRST_CANDLE_S),
    ]  # fmt: skip


def _machine(allowed: list[int]) -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cpus_available": allowed,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
