"""The embedded pipeline on a real DuckDB file and real sources: what its status says about the
sources it runs (why one waits, that one finished) and which instruments are this run's."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import duckdb
from rich.console import Console

from tickpipe.config import Config
from tickpipe.records import TradeBatch
from tickpipe.runners.embedded import REPLAY_QUEUE_TRADES, Pipeline
from tickpipe.runtime.clock import ManualClock
from tickpipe.runtime.status import PipelineStatus
from tickpipe.sources.binance import make_source
from tickpipe.sources.registry import ExchangeOptions
from tickpipe.sources.replay import FileReplay, write_trades
from tickpipe.sources.simulated import MarketSimulator, SimulatedMarket
from tickpipe.view.terminal import Locations, render, source_state

S = 1_000_000
DEAD_WS = "ws://127.0.0.1:9"  # nothing listens on the discard port


def config(tmp_path: Path) -> Config:
    return Config(data_dir=str(tmp_path), intervals=["1s", "1m"])


def view_text(status: PipelineStatus) -> str:
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(render(status, Locations("t.duckdb", "dead")))
    return console.export_text()


def test_a_demo_stopped_by_its_duration_says_done_with_its_trades(tmp_path: Path) -> None:
    pipeline = Pipeline(config(tmp_path), [SimulatedMarket(3, 2000.0, seed=1)], "demo")
    try:
        assert pipeline.restore()
        asyncio.run(pipeline.run(duration=0.3))
    finally:
        pipeline.close()
    source = pipeline.status().sources["simulated"]
    assert source.finished and source.trades > 0
    assert source_state(source) == f"done, {source.trades:,} trades"
    assert f"simulated ● done, {source.trades:,} trades" in view_text(pipeline.status())


def test_a_replay_at_its_end_says_done(tmp_path: Path) -> None:
    trades = MarketSimulator(["BTC-USDT"], 100.0, seed=3, exchange="binance", source="binance")
    path = tmp_path / "trades.jsonl"
    write_trades(path, trades.span(0, 2 * S))
    replay = FileReplay(path, speed=None)
    pipeline = Pipeline(config(tmp_path), [replay], "run")
    try:
        assert pipeline.restore()
        asyncio.run(asyncio.wait_for(pipeline.run(), timeout=30))  # ends with the file
    finally:
        pipeline.close()
    source = pipeline.status().sources[replay.name]
    assert source.finished and not source.error
    assert source_state(source) == f"done, {source.trades:,} trades"


def test_a_file_replay_queues_a_bounded_number_of_trades_and_stores_every_one(
    tmp_path: Path,
) -> None:
    trades = MarketSimulator(["BTC-USDT", "ETH-USDT"], 20_000.0, seed=4, exchange="binance",
                             source="binance").span(0, 15 * S)  # fmt: skip
    path = tmp_path / "trades.parquet"
    write_trades(path, trades)
    pipeline = Pipeline(config(tmp_path), [FileReplay(path, speed=None)], "run")
    live = Pipeline(config(tmp_path / "live"), [SimulatedMarket(3, 10.0, seed=1)], "demo")
    live.close()
    deepest = 0
    put = pipeline.transport.put

    async def measured_put(batch: TradeBatch) -> None:
        nonlocal deepest
        await put(batch)
        deepest = max(deepest, pipeline.transport.depth)

    pipeline.transport.put = measured_put  # type: ignore[method-assign]
    try:
        assert pipeline.restore()
        asyncio.run(asyncio.wait_for(pipeline.run(), timeout=120))
    finally:
        pipeline.close()
    with duckdb.connect(str(tmp_path / "tickpipe.duckdb"), read_only=True) as con:
        ((stored,),) = con.execute("SELECT count(*) FROM trades").fetchall()

    assert len(trades) > 2 * REPLAY_QUEUE_TRADES  # the file is more than the queue holds
    assert 0 < deepest <= REPLAY_QUEUE_TRADES < live.transport.max_trades
    assert stored == len(trades)


def test_a_source_that_cannot_connect_shows_why_it_waits(tmp_path: Path) -> None:
    binance = make_source(["BTC-USDT"], ExchangeOptions(url=DEAD_WS, rest_url="http://127.0.0.1:9"))
    pipeline = Pipeline(config(tmp_path), [binance], "run")

    async def until_a_disconnect() -> PipelineStatus:
        run = asyncio.create_task(pipeline.run(duration=20))
        try:
            async with asyncio.timeout(15):
                while not pipeline.status().sources["binance"].last_disconnect:
                    await asyncio.sleep(0.02)
            return pipeline.status()
        finally:
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)

    try:
        assert pipeline.restore()
        status = asyncio.run(until_a_disconnect())
    finally:
        pipeline.close()
    source = status.sources["binance"]
    assert not source.connected and not source.finished
    assert "refused" in source.last_disconnect.lower(), source.last_disconnect
    line = next(line for line in view_text(status).splitlines() if "sources" in line)
    assert "binance ● waiting (" in line and "refused" in line.lower()


def test_a_run_on_a_demos_data_dir_lists_only_its_own_instruments(tmp_path: Path) -> None:
    clock = ManualClock()
    t0 = clock.now_us()
    demo = Pipeline(config(tmp_path), [], "demo", clock=clock)
    try:
        assert demo.restore()
        demo.stage.process(MarketSimulator(5, 500.0, seed=1).span(t0 - 2 * S, t0))
        demo.stage.finish()
    finally:
        demo.close()

    clock.advance(1.0)
    live = MarketSimulator(["BTC-USDT"], 200.0, seed=2, exchange="binance", source="binance")
    run = Pipeline(config(tmp_path), [], "run", clock=clock)
    try:
        assert run.restore()
        assert any(e == "simulated" for e, _ in run.instruments())  # the demo's, restored
        assert run.status().instruments == ()  # ... but not this run's
        batch = live.span(clock.now_us() - S, clock.now_us())
        run.stage.process(batch)
        status = run.status()
    finally:
        run.close()
    assert [(i.exchange, i.symbol) for i in status.instruments] == [("binance", "BTC-USDT")]
    assert status.instruments[0].trades == len(batch) == status.trades
    assert "simulated" not in view_text(status)
    assert len(run.instruments()) == 6  # the demo's stored history stays known to the API
