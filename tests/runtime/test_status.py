"""One PipelineStatus, rendered by the terminal view, /api/kpis and the Prometheus gauges alike;
time comes from a ManualClock, so rates and uptime are exact."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine
from tickpipe.runtime.clock import ManualClock
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.status import StatusBoard
from tickpipe.runtime.writer import StoreWriter
from tickpipe.serve.app import pipeline_json
from tickpipe.sources import Link, SourceStats
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.transport.memory import MemoryTransport
from tickpipe.view.terminal import Locations, format_rate, render, source_state


def test_the_view_and_the_api_render_the_same_status(tmp_path: Path) -> None:
    clock = ManualClock()
    store = DuckDBStore(tmp_path / "t.duckdb")
    writer = StoreWriter(store)
    stage = EngineStage(CandleEngine(Config().engine_config()), writer, DeadLetters(None), clock)
    stats = {"simulated": SourceStats(trades=7, malformed=2, reconnects=1, links=[Link(up=False)])}
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
    assert api["trades"] == status.trades
    assert api["malformed"] == status.malformed == 2
    assert api["sources"] == {"simulated": {
        "connected": False, "reconnects": 1, "trades": 7, "last_disconnect": "", "finished": False,
        "error": "",
    }}  # fmt: skip
    assert source_state(status.sources["simulated"]) == "waiting (1 reconnects)"
    console = Console(record=True, width=160, file=io.StringIO())
    console.print(render(status, Locations("t.duckdb", "dead")))
    view = console.export_text()
    assert f"trades {status.trades:,}" in view
    assert f"rate {format_rate(status.trades_per_s)}/s" in view
    assert "malformed 2" in view
    assert "simulated ● waiting (1 reconnects)" in view
    for i in status.instruments:
        cells = next(line for line in view.splitlines() if i.symbol in line).strip("│ ").split()
        assert float(cells[2].replace(",", "")) == pytest.approx(i.last_price, rel=1e-6)


def test_a_lake_that_falls_behind_is_counted_in_the_status_and_the_api(tmp_path: Path) -> None:
    from tickpipe.stores.lake.location import LakeSettings, open_lake
    from tickpipe.stores.lake.writer import LakeWriter

    clock = ManualClock()
    store = DuckDBStore(tmp_path / "t.duckdb")
    writer = StoreWriter(store)
    stage = EngineStage(CandleEngine(Config().engine_config()), writer, DeadLetters(None), clock)
    board = StatusBoard("demo", stage, writer, MemoryTransport(100), {}, clock)
    # An S3 endpoint nobody answers: the lake's thread is stuck retrying its first file.
    dead = LakeSettings("s3://nowhere/lake", endpoint="http://127.0.0.1:9", region="us-east-1",
                        roll_bytes=1024, retry_for_s=1.0)  # fmt: skip
    lake = LakeWriter(open_lake(dead, env={}), max_queued=1)
    writer.after_write.append(lake.offer)
    board.lake = lake
    market = MarketSimulator(["BTC-USDT", "ETH-USDT"], 1000.0, seed=2)
    try:
        for _ in range(6):
            now = clock.now_us()
            stage.process(market.span(now - 1_000_000, now))
            assert writer.flush(timeout=30)
            clock.advance(1.0)
        status = board.read()
    finally:
        writer.close()
        store.close()
        with pytest.raises(RuntimeError, match="lake s3://nowhere/lake: cannot write"):
            lake.close()

    assert status.lake_dropped_trades > 0
    assert status.lake_queued <= 1
    assert status.trades_written == status.trades  # the store wrote on regardless
    api = pipeline_json(status)
    assert api["lake_dropped_trades"] == status.lake_dropped_trades
