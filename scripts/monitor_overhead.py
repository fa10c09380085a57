"""What the monitor's per-batch hooks cost next to the engine, on the same batches in the same
run (ratios, since absolute timings on a shared machine mean little).

    .venv/bin/python scripts/monitor_overhead.py

Loop side: what runs on the event loop per batch (labelled counts, the source's last trade).
Writer side: what runs on the store writer's thread per flush (stored counts, the lag and
latency histograms, lag samples for KPIs and alerts).
"""

from __future__ import annotations

import time

from tickpipe.config import Config
from tickpipe.engine.candles import CandleEngine
from tickpipe.monitor.metrics import PipelineMetrics
from tickpipe.monitor.state import PipelineState
from tickpipe.sources.simulated import MarketSimulator

S = 1_000_000
T0 = 1_800_000_000 * S


def main() -> None:
    for size in (100, 1_000, 10_000):
        market = MarketSimulator(20, 2000.0, seed=1)
        step = int(size / 2000 * S)
        batches = [market.span(T0 + i * step, T0 + (i + 1) * step) for i in range(300)]
        n = sum(len(b) for b in batches)
        engine = CandleEngine(Config().engine_config())
        metrics, state = PipelineMetrics(), PipelineState()
        started = time.perf_counter()
        for i, batch in enumerate(batches):
            engine.process(batch, T0 + (i + 1) * step)
        engine_s = time.perf_counter() - started
        started = time.perf_counter()
        for i, batch in enumerate(batches):
            now = T0 + (i + 1) * step
            metrics.observe_received(batch, now / 1e6)
            state.on_received(batch, now)
        loop_s = time.perf_counter() - started
        started = time.perf_counter()
        for i, batch in enumerate(batches):
            now = T0 + (i + 1) * step
            state.on_stored([batch], metrics.observe_stored([batch], 10, 0.001, now))
        writer_s = time.perf_counter() - started
        print(
            f"batches of {size:>6,} trades: engine {engine_s / n * 1e9:6.0f} ns/trade; "
            f"monitor on the loop {loop_s / n * 1e9:4.0f} ns/trade "
            f"({loop_s / engine_s:5.1%} of the engine), on the writer thread "
            f"{writer_s / n * 1e9:4.0f} ns/trade ({writer_s / engine_s:5.1%})"
        )


if __name__ == "__main__":
    main()
