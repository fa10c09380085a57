"""The status read model's data quality: the engine's duplicate and future-stamped counts of
this run only (what a restore replays through the engine is history), with the meter's."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine
from tickpipe.records import Trade, TradeBatch
from tickpipe.runtime.clock import ManualClock
from tickpipe.runtime.quality import QualityMeter
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.status import StatusBoard
from tickpipe.runtime.writer import StoreWriter
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.transport.memory import MemoryTransport

S = 1_000_000


def trades(first: int, n: int, now: int, ahead: int = 0) -> list[Trade]:
    """`n` Binance trades, ids from `first`, received at `now`; `ahead` s of them stamped 60 s
    after receipt (future-stamped)."""
    return [
        Trade(source="binance", exchange="binance", symbol="BTC-USDT", trade_id=str(i), seq=i,
              price=100.0, size=1.0, ts=now - S + i + (60 * S if i < first + ahead else 0),
              recv_ts=now)
        for i in range(first, first + n)
    ]  # fmt: skip


def test_quality_counts_this_runs_trades_not_what_the_restore_replayed(tmp_path: Path) -> None:
    clock = ManualClock()
    now = clock.now_us()
    store = DuckDBStore(tmp_path / "t.duckdb")
    writer = StoreWriter(store)
    stage = EngineStage(CandleEngine(Config().engine_config()), writer, DeadLetters(None), clock)
    stage.quality = QualityMeter()
    board = StatusBoard("run", stage, writer, MemoryTransport(100), {}, clock)
    try:
        # the restore: the engine alone, as `EngineStage.restore` feeds it
        restored = trades(1, 10, now, ahead=3)
        stage.engine.process(TradeBatch.from_trades(restored), now)
        board.begin_run()
        live = trades(11, 20, now, ahead=2)
        resent = [msgspec.structs.replace(t) for t in restored[:4]]  # duplicates of stored ones
        stage.process(TradeBatch.from_trades(live + resent))
        quality = board.read().quality["binance"]
    finally:
        writer.close()
        store.close()
    assert (quality.received, quality.future, quality.duplicates) == (24, 2, 4)
