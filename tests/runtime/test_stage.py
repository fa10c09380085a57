"""The engine stage on a real DuckDB store: one `restore` for the embedded restart and the
Kafka replay gives the same candles; a replaying stage (no writer) submits nothing."""

from __future__ import annotations

from pathlib import Path

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine, EngineOutput
from tickpipe.records import Candle
from tickpipe.runtime.clock import ManualClock
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.writer import StoreWriter
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.duckdb import DuckDBStore

CONFIG = Config(intervals=["1s", "1m"])


def stored(path: Path, clock: ManualClock) -> DuckDBStore:
    """Two minutes of simulated trades ending at the clock's time, stored."""
    store = DuckDBStore(path)
    market = MarketSimulator(["BTC-USDT", "ETH-USDT"], 50.0, seed=4)
    end = clock.now_us()
    store.write(trades=[market.span(end - 120_000_000, end)])
    return store


def key(c: Candle) -> tuple:
    return (c.exchange, c.symbol, c.interval, c.start, c.open, c.high, c.low, c.close,
            c.volume, c.trades, c.first_seq, c.last_seq, c.final, c.revision)  # fmt: skip


def test_restore_gives_the_same_candles_for_the_embedded_restart_and_the_kafka_replay(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    results = []
    for path in ("embedded", "replay"):
        store = stored(tmp_path / f"{path}.duckdb", clock)
        engine = CandleEngine(CONFIG.engine_config())
        writer = StoreWriter(store)
        stage = EngineStage(engine, writer, DeadLetters(None), clock)
        candles: list[Candle] = []
        stage.on_output.append(lambda o, into=candles: into.extend(o.candles))
        align = max(w.size for w in engine.windows)
        cutoff = store.restore_cutoff(engine.horizon, engine.config.allowed_lateness, align)
        assert cutoff
        if path == "embedded":
            stage.restore(store, cutoff, store.restore_batches(cutoff))
        else:
            replaying = EngineStage(engine, None, DeadLetters(None), clock)
            seen: list[EngineOutput] = []
            replaying.on_output.append(seen.append)
            for batch in store.restore_batches(cutoff):
                replaying.process(batch)
            assert writer.submitted == 0 and not seen  # replayed: nothing written or published
            stage.restore(store, cutoff)
        assert writer.submitted == 1  # the restored candles, as one output
        writer.close()
        store.close()
        results.append(sorted(key(c) for c in candles))
    embedded, replay = results
    assert embedded and embedded == replay
