"""What data quality per venue and the composite price cost next to the engine, on the same
batches in the same run (ratios, since absolute timings on a shared machine mean little).

    .venv/bin/python scripts/quality_overhead.py

Three venues trade the same 20 symbols (so every symbol has a composite of three), each
venue's trades arriving as its own batches, as sources deliver them. Quality: what the engine
stage adds per batch (`QualityMeter.observe`). Composite: `CompositeCandles.update` on each
engine step's candle updates. Status: one read of the quality figures and live composites
(what the view, the API and /metrics do, once per refresh or scrape).
"""

from __future__ import annotations

import time

from tickpipe.config import Config
from tickpipe.engine.candles import CandleEngine
from tickpipe.engine.composite import CompositeCandles, consolidate
from tickpipe.engine.composite_settings import CompositeConfig
from tickpipe.runtime.quality import QualityMeter, engine_counts
from tickpipe.sources.simulated import MarketSimulator, symbol_names

S = 1_000_000
T0 = 1_800_000_000 * S
VENUES = ("binance", "coinbase", "kraken")


def main() -> None:
    names = symbol_names(20)
    for size in (100, 1_000, 10_000):
        markets = [MarketSimulator(names, 2000.0, seed=i, exchange=v, source=v)
                   for i, v in enumerate(VENUES)]  # fmt: skip
        step = int(size / 2000 * S)
        batches = [
            (T0 + (i + 1) * step, m.span(T0 + i * step, T0 + (i + 1) * step))
            for i in range(150)
            for m in markets
        ]
        n = sum(len(b) for _, b in batches)
        engine = CandleEngine(Config().engine_config())
        outputs = []
        started = time.perf_counter()
        for now, batch in batches:
            outputs.append(engine.process(batch, now).candles)
        engine_s = time.perf_counter() - started
        meter = QualityMeter()
        started = time.perf_counter()
        for now, batch in batches:
            meter.observe(batch, now)
        quality_s = time.perf_counter() - started
        composite = CompositeCandles(CompositeConfig(), engine.horizon)
        made = 0
        started = time.perf_counter()
        for candles in outputs:
            made += len(composite.update(candles))
        composite_s = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(100):
            meter.read(T0, engine_counts(engine.states))
            latest = [(s.instrument.exchange, s.instrument.symbol, s.last_price, s.last_recv_ts)
                      for s in engine.states]  # fmt: skip
            consolidate(latest, batches[-1][0], CompositeConfig())
        read_ms = (time.perf_counter() - started) / 100 * 1e3
        print(
            f"batches of {size:>6,} trades: engine {engine_s / n * 1e9:5.0f} ns/trade; quality "
            f"{quality_s / n * 1e9:4.0f} ns/trade ({quality_s / engine_s:5.1%} of the engine); "
            f"composite {composite_s / n * 1e9:4.0f} ns/trade ({composite_s / engine_s:5.1%}; "
            f"{composite_s / max(made, 1) * 1e6:.1f} µs per composite candle, {made:,} from "
            f"{sum(map(len, outputs)):,} venue candle updates); status read {read_ms:.2f} ms"
        )


if __name__ == "__main__":
    main()
