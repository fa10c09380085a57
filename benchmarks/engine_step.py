"""The engine's fixed cost per step: CPU per step and per trade for small live batches.

A live feed hands the engine many tiny batches (1-300 trades). This feeds a `CandleEngine`
(and, with `--stage`, the whole `EngineStage` as `tickpipe run` builds it: data quality,
metrics, the step pacer, the live hub and the DuckDB store writer) batches of 1, 10, 100 and
1,000 trades over 50 instruments with the default 5 intervals, in event-time order like a
live feed (trades spread over the instruments at `--rate` trades/s of event time, the wall
clock `--delay-ms` behind the newest trade), and prints CPU microseconds per step and per
trade: `time.process_time` (the whole process) and `time.thread_time` (the stepping thread
alone; the stage's store writer runs in a thread of its own), min / median / max of
`--repeat` runs, each on a fresh engine warmed up by `--warmup-s` of the feed first.

Run it with the sources to measure first on the path, e.g. before / after:

    PYTHONPATH=/work/main/src python benchmarks/engine_step.py
    PYTHONPATH=$PWD/src python benchmarks/engine_step.py

Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

import tickpipe
from tickpipe.config import Config
from tickpipe.engine.candles import CandleEngine
from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument, TradeBatch

T0_US = 1_700_000_000_000_000


def feed(
    instruments: list[Instrument], rate: float, seconds: float, size: int, seed: int
) -> list[TradeBatch]:
    """`seconds` of trades at `rate` a second over `instruments` (each symbol's ids and times
    increasing), cut into batches of `size` consecutive trades that share one instrument list
    (as a source hands over its index's)."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    n -= n % size
    gap_us = 1e6 / rate
    ts = T0_US + np.cumsum(rng.exponential(gap_us, n)).astype(np.int64)
    inst = rng.integers(0, len(instruments), n).astype(np.int32)
    seq = np.zeros(n, np.int64)
    for g in range(len(instruments)):
        mine = np.flatnonzero(inst == g)
        seq[mine] = 1_000_000 * (g + 1) + np.arange(len(mine))
    price = 100.0 + np.cumsum(rng.normal(0, 0.01, n))
    size_col = rng.exponential(0.5, n)
    side = np.where(rng.random(n) < 0.5, SIDE_BUY, SIDE_SELL).astype(np.int8)
    recv = ts + 300
    batches = []
    for i in range(0, n, size):
        cut = slice(i, i + size)
        batches.append(TradeBatch(
            source="binance", instruments=instruments, instrument=inst[cut], seq=seq[cut],
            price=price[cut], size=size_col[cut], side=side[cut], ts=ts[cut], recv_ts=recv[cut],
        ))  # fmt: skip
    return batches


def timed(run: Callable[[], None]) -> tuple[float, float]:
    """(process CPU s, thread CPU s) of `run()`."""
    p0, t0 = time.process_time(), time.thread_time()
    run()
    return time.process_time() - p0, time.thread_time() - t0


def engine_run(
    batches: list[TradeBatch], warm: int, delay_us: int, config: Config
) -> tuple[float, float]:
    engine = CandleEngine(config.engine_config())
    for b in batches[:warm]:
        engine.process(b, int(b.ts[-1]) + delay_us)
    rest = batches[warm:]
    nows = [int(b.ts[-1]) + delay_us for b in rest]

    def go() -> None:
        process = engine.process
        for b, now in zip(rest, nows, strict=True):
            process(b, now)

    return timed(go)


def stage_run(
    batches: list[TradeBatch], warm: int, delay_us: int, config: Config
) -> tuple[float, float]:
    from tickpipe.runners.embedded import Pipeline
    from tickpipe.runtime.clock import ManualClock
    from tickpipe.serve.live import Hub

    with tempfile.TemporaryDirectory() as tmp:
        clock = ManualClock(now_us=T0_US)
        hub = Hub()
        cfg = Config(data_dir=tmp, intervals=config.intervals)
        pipeline = Pipeline(cfg, [], "run", hub=hub, clock=clock)
        try:
            pipeline.restore()
            sub = hub.connect()  # a page watching 5 symbols' 1 s candles, as latency.py's
            for inst in batches[0].instruments[:5]:
                hub.subscribe(sub, inst.exchange, inst.symbol, config.intervals[0])
            stage = pipeline.stage

            def step(b: TradeBatch) -> None:
                gap_us = int(b.ts[-1]) + delay_us - clock.now_us()
                if gap_us > 0:
                    clock.advance(gap_us / 1e6)
                pipeline.pacer.urgent(b, clock.now_us())
                stage.process(b)
                sub.queue.clear()  # the client reads what was pushed

            for b in batches[:warm]:
                step(b)
            rest = batches[warm:]

            def go() -> None:
                for b in rest:
                    step(b)

            return timed(go)
        finally:
            pipeline.writer.close()
            pipeline.monitor.close()
            pipeline.store.close()
            pipeline.dead_letters.close()


def spread(values: list[float]) -> str:
    return f"{min(values):8.1f} {statistics.median(values):8.1f} {max(values):8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,100,1000", help="trades per step")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rate", type=float, default=10_000, help="trades/s of event time")
    parser.add_argument("--trades", type=int, default=50_000, help="timed trades per run")
    parser.add_argument("--max-steps", type=int, default=3_000, help="timed steps per run, at most")
    parser.add_argument("--warmup-s", type=float, default=3.0, help="event time fed untimed first")
    parser.add_argument("--delay-ms", type=float, default=1.0, help="wall clock behind the feed")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--stage", action="store_true", help="also the whole EngineStage")
    args = parser.parse_args()
    config = Config()
    instruments = [Instrument("binance", f"S{i:02d}-USDT", f"S{i:02d}USDT")
                   for i in range(args.symbols)]  # fmt: skip
    delay_us = round(args.delay_ms * 1000)
    print(f"tickpipe from {os.path.dirname(tickpipe.__file__)}")
    intervals = ", ".join(config.intervals)
    print(f"{args.symbols} instruments x {len(config.intervals)} intervals ({intervals}), "
          f"feed {args.rate:,.0f} trades/s of event time")  # fmt: skip
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    kinds = [("engine", engine_run)] + ([("stage", stage_run)] if args.stage else [])
    print("CPU us per step (process / thread), min median max; per trade: median")
    for size in [int(s) for s in args.sizes.split(",")]:
        steps = max(1, min(args.max_steps, args.trades // size))
        steps = max(steps, min(args.max_steps, 100))
        warm = max(1, int(args.warmup_s * args.rate) // size)
        seconds = (warm + steps) * size / args.rate
        batches = feed(instruments, args.rate, seconds + size / args.rate, size, seed=size)
        batches = batches[: warm + steps]
        steps = len(batches) - warm
        for name, run in kinds:
            proc, thread = [], []
            for _ in range(args.repeat):
                p, t = run(batches, warm, delay_us, config)
                proc.append(p * 1e6 / steps)
                thread.append(t * 1e6 / steps)
            print(f"{name:6} {size:5} trades/step x {steps:5} steps: process {spread(proc)}"
                  f" | thread {spread(thread)} | per trade {statistics.median(proc) / size:7.2f}"
                  f" / {statistics.median(thread) / size:7.2f} us")  # fmt: skip
            sys.stdout.flush()
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
