"""Fill a data dir with a big store, as `tickpipe demo` would have left it, in minutes.

    python benchmarks/make_store.py --trades 25000000 --data-dir /tmp/store25m
    python benchmarks/make_store.py --trades 10000000 --data-dir DIR --rate 20000 --symbols 500

Measuring verify, a restart or the API at volume needs a store of tens of millions of trades;
`tickpipe demo` takes as long as the market it simulates (25M trades at 50,000 trades/s: 8
minutes, on a machine doing nothing else). This runs the same parts without the wall clock:
`tickpipe demo`'s simulated market (`--symbols`, `--rate` in trades per second of event time,
`--seed`), the candle engine with the configured windows, and the store writer, in batches of
one second of market time, on a clock that follows event time. So the data dir holds the same
schema, trades, candles (final and the provisional ones of the windows still open) and
rolling statistics as a demo of `--trades / --rate` seconds that ended when this was started,
and `tickpipe verify`, `tickpipe serve` or a restarted `tickpipe demo` use it as they are.

The store is the one the configuration names (`--config`, `TICKPIPE_STORE`; the DuckDB file
under `--data-dir` by default). An existing store is added to: use a new data dir. Progress
goes to stderr every few seconds.
"""

from __future__ import annotations

import argparse
import sys
import time

from tickpipe.config import ConfigError, load_config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine
from tickpipe.runtime.clock import ManualClock, now_us
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.writer import StoreWriter
from tickpipe.sources.simulated import SimulatedMarket, seq_start
from tickpipe.stores.base import StoreError

S = 1_000_000
PROGRESS_EVERY_S = 5.0


def make_store(
    config_path: str | None, data_dir: str, trades: int, symbols: int, rate: float, seed: int
) -> int:
    """Store `trades` trades of a simulated market that ends now; the trades stored."""
    config = load_config(config_path, overrides={"data_dir": data_dir})
    start_us = now_us() - round(trades / rate * S)
    market = SimulatedMarket(symbols, rate, seed, start_seq=seq_start(start_us))
    clock = ManualClock(start_us, 0.0)
    store = config.open_store()
    writer = StoreWriter(store, config.flush_every_s)
    dead_letters = DeadLetters(config.dead_letter_path)
    stage = EngineStage(CandleEngine(config.engine_config()), writer, dead_letters, clock)
    started = shown = time.monotonic()
    made = 0
    try:
        while made < trades:
            batch = market.span(clock.now_us(), clock.now_us() + S)
            batch = batch.take(slice(0, trades - made))
            clock.advance(1.0)
            stage.process(batch)
            stage.tick()
            made += len(batch)
            if stage.behind:
                writer.flush()
            if time.monotonic() - shown >= PROGRESS_EVERY_S:
                shown = time.monotonic()
                _progress(made, trades, shown - started, writer.written_trades)
        stage.finish()
        writer.close()
    finally:
        store.close()
        dead_letters.close()
    _progress(made, trades, time.monotonic() - started, writer.written_trades)
    return writer.written_trades


def _progress(made: int, trades: int, elapsed_s: float, stored: int) -> None:
    rate = made / max(elapsed_s, 1e-9)
    eta_s = (trades - made) / max(rate, 1e-9)
    print(
        f"make_store: {made:,}/{trades:,} trades made, {stored:,} stored, "
        f"{rate:,.0f} trades/s, {elapsed_s:.0f}s elapsed, ETA {eta_s:.0f}s",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=25_000_000, help="trades to store")
    parser.add_argument("--data-dir", required=True, help="the data dir to fill (a new one)")
    parser.add_argument("--config", help="a tickpipe TOML configuration (windows, store)")
    parser.add_argument("--symbols", type=int, default=200, help="simulated symbols")
    parser.add_argument("--rate", type=float, default=50_000.0, help="trades per second")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the market")
    args = parser.parse_args(argv)
    try:
        stored = make_store(
            args.config, args.data_dir, args.trades, args.symbols, args.rate, args.seed
        )
    except (ConfigError, StoreError, ValueError) as exc:
        print(f"make_store: {exc}", file=sys.stderr)
        return 1
    print(f"make_store: {stored:,} trades stored under {args.data_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
