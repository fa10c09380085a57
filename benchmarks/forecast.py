"""What the forecasts cost: CPU per final candle, and the demo's throughput with and without
them.

    python benchmarks/forecast.py --seconds 30 --rate 200000 --symbols 50

1. The models alone: `--candles` final candles over `--symbols` instruments through
   `Forecasts.observe` (score, learn, forecast), timed by process CPU time.
2. The embedded pipeline of `tickpipe demo` (simulated market at `--rate` trades/s, engine,
   DuckDB; no API) for `--seconds`, once without forecasts and once with them (intervals 1s,
   5s, 1m: the busiest case, a final candle per symbol every second), alternating `--runs`
   times; prints the stored trades per second of each run, the final candles the forecasts
   saw, and the CPU their thread spent.
Nothing is asserted: the figures are for the README.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time

from tickpipe.config import Config
from tickpipe.forecast.evaluator import Forecasts
from tickpipe.forecast.model import require_river
from tickpipe.records import Candle
from tickpipe.runners.embedded import Pipeline
from tickpipe.sources.simulated import SimulatedMarket

S = 1_000_000


def synthetic(n: int, symbols: int) -> list[Candle]:
    """n final 1s candles, round-robin over `symbols` instruments, with a wave in the close."""
    out = []
    for i in range(n):
        k, step = i % symbols, i // symbols
        close = 100.0 + math.sin(step / 9 + k) + 0.01 * ((step * 31 + k) % 7)
        out.append(Candle(
            exchange="sim", symbol=f"S{k}-USDT", interval="1s", start=step * S, open=close,
            high=close * 1.001, low=close * 0.999, close=close, volume=3.0,
            quote_volume=3 * close, vwap=close, mean_price=close, trades=5, buy_volume=1.0 + k % 2,
            sell_volume=2.0 - k % 2, first_seq=i, last_seq=i, final=True, revision=0,
            updated_at=step * S,
        ))  # fmt: skip
    return out


def models_alone(candles: int, symbols: int) -> None:
    require_river()
    rows = synthetic(candles, symbols)
    forecasts = Forecasts()
    started = time.process_time()
    for candle in rows:
        forecasts.observe([candle], candle.start)
    cpu_s = time.process_time() - started
    print(f"models alone: {candles:,} final candles over {symbols} instruments: "
          f"{cpu_s / candles * 1e6:.1f} µs CPU per candle (score + learn + forecast)")  # fmt: skip


def pipeline_run(seconds: float, rate: float, symbols: int, forecast: bool) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Config(data_dir=tmp, intervals=["1s", "5s", "1m"], forecast=forecast)
        pipeline = Pipeline(config, [SimulatedMarket(symbols, rate, seed=1)], "demo")
        try:
            pipeline.restore()
            started = time.monotonic()
            asyncio.run(pipeline.run(duration=seconds))
            elapsed = time.monotonic() - started
        finally:
            pipeline.close()
        rate_out = pipeline.writer.written_trades / elapsed
        extra = ""
        if pipeline.forecast is not None:
            f = pipeline.forecast
            per_candle_us = f.cpu_s / max(f.candles, 1) * 1e6
            extra = (f"; forecasts: {f.candles:,} final candles, {f.dropped:,} dropped, "
                     f"{f.cpu_s:.2f} s CPU ({per_candle_us:.0f} µs a candle)")  # fmt: skip
        return rate_out, extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--candles", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=200_000.0)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    models_alone(args.candles, args.symbols)
    results: dict[bool, list[float]] = {False: [], True: []}
    for run in range(args.runs):
        for forecast in (False, True):
            rate, extra = pipeline_run(args.seconds, args.rate, args.symbols, forecast)
            results[forecast].append(rate)
            label = "with forecasts   " if forecast else "without forecasts"
            print(f"run {run + 1} {label}: {rate:,.0f} trades/s stored{extra}", flush=True)
    for forecast, rates in results.items():
        label = "with forecasts   " if forecast else "without forecasts"
        print(f"{label}: mean {sum(rates) / len(rates):,.0f} trades/s over {len(rates)} runs")


if __name__ == "__main__":
    main()
