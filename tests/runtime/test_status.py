"""One PipelineStatus, rendered by the terminal view, /api/kpis and the Prometheus gauges alike;
time comes from a ManualClock, so rates and uptime are exact."""

from __future__ import annotations

from pathlib import Path

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine
from tickpipe.runtime.clock import ManualClock
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.status import StatusBoard
from tickpipe.runtime.writer import StoreWriter
from tickpipe.serve.app import pipeline_json
from tickpipe.sources import SourceStats
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.transport.memory import MemoryTransport
from tickpipe.view.terminal import snapshot_of


def test_the_view_and_the_api_render_the_same_status(tmp_path: Path) -> None:
    clock = ManualClock()
    store = DuckDBStore(tmp_path / "t.duckdb")
    writer = StoreWriter(store)
    stage = EngineStage(CandleEngine(Config().engine_config()), writer, DeadLetters(None), clock)
    stats = {"simulated": SourceStats(trades=7, malformed=2, reconnects=1, connected=False)}
    board = StatusBoard("demo", stage, writer, MemoryTransport(100), stats, clock)
    market = MarketSimulator(["BTC-USDT", "ETH-USDT"], 100.0, seed=2)
    try:
        stage.process(market.span(clock.now_us() - 2_000_000, clock.now_us()))
        clock.advance(2.0)
        status = board.read()
    finally:
        writer.close()
        store.close()

    assert status.uptime_s == 2.0
    assert status.trades == stage.counters.trades > 0
    assert sum(i.trades for i in status.instruments) == status.trades
    assert status.trades_per_s == status.trades / 2.0  # measured over the 2 s that passed
    assert status.malformed == 2 and status.queue_capacity == 100

    api = pipeline_json(status)
    view = snapshot_of(status, "t.duckdb", "dead", None)
    assert api["trades"] == view.trades_total == status.trades
    assert api["malformed"] == view.malformed == 2
    assert api["sources"] == {"simulated": {"connected": False, "reconnects": 1, "trades": 7}}
    assert view.sources == {"simulated": "waiting (1 reconnects)"}
    assert view.trades_per_s == status.trades_per_s
    assert [(r.symbol, r.last_price) for r in view.rows] == [
        (i.symbol, i.last_price) for i in status.instruments
    ]
