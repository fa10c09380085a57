"""The forecasts beside the engine: what they keep equals a replay of the stored candles, the
scores carry on across a restart, and the engine never waits for the models."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import msgspec
import pytest

from tickpipe.config import Config
from tickpipe.engine.candles import EngineOutput
from tickpipe.forecast.evaluator import Prequential
from tickpipe.forecast.model import ReturnModel
from tickpipe.forecast.replay import replay_stored
from tickpipe.forecast.service import ForecastService, start_forecasts
from tickpipe.runners.embedded import Pipeline
from tickpipe.runtime.clock import ManualClock
from tickpipe.sources.replay import FileReplay, write_trades
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.postgresql import PostgresStore

from .series import S, series


def without_times(scores: list) -> list[dict]:
    return sorted(
        ({**msgspec.structs.asdict(s), "updated_at": 0} for s in scores),
        key=lambda d: (d["exchange"], d["symbol"], d["interval"], d["forecaster"]),
    )


@pytest.mark.parametrize("kind", ["duckdb", "postgresql"])
def test_the_pipelines_forecasts_equal_a_replay_of_its_stored_candles(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    dsn = request.getfixturevalue("postgres_dsn") if kind == "postgresql" else ""
    trades = MarketSimulator(["BTC-USDT", "ETH-USDT"], 200.0, seed=5, exchange="binance",
                             source="binance")  # fmt: skip
    path = tmp_path / "trades.jsonl"
    write_trades(path, trades.span(0, 90 * S))
    config = Config(data_dir=str(tmp_path), intervals=["1s", "5s"], forecast=True, store=dsn)
    pipeline = Pipeline(config, [FileReplay(path, speed=None)], "run")
    try:
        assert pipeline.restore()
        asyncio.run(asyncio.wait_for(pipeline.run(), timeout=60))
    finally:
        pipeline.close()
    store = PostgresStore(dsn) if dsn else DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
    try:
        kept = store.forecast_scores()
        replayed = replay_stored(store, ["1s", "5s"])
        points = store.forecast_points("binance", "BTC-USDT", "1s", 0, 2**62)
    finally:
        store.close()
    assert {s.interval for s in kept} == {"1s", "5s"}
    assert min(s.n for s in kept if s.interval == "1s") > 50
    assert without_times(kept) == without_times(replayed.scores)
    assert all(p.low <= p.high for p in points) and len(points) > 50


def test_scores_carry_on_across_a_restart(tmp_path: Path) -> None:
    candles = series(120)
    path = tmp_path / "t.duckdb"
    clock = ManualClock()
    for part in (candles[:70], candles[70:]):
        store = DuckDBStore(path)
        service = ForecastService(store, clock)
        for k in part:
            service.offer(EngineOutput(candles=[k]))
        service.close()
        store.close()
    # The reference: two fresh evaluators (the models start anew), their sums added up.
    first, second = Prequential("sim", "BTC-USDT", "1s", S), Prequential("sim", "BTC-USDT", "1s", S)
    for k in candles[:70]:
        first.observe(k, 0)
    for k in candles[70:]:
        second.observe(k, 0)
    store = DuckDBStore(path, read_only=True)
    try:
        kept = {s.forecaster: s for s in store.forecast_scores()}
    finally:
        store.close()
    for name, a in first.scores.items():
        b = second.scores[name]
        assert kept[name].n == a.n + b.n
        assert kept[name].abs_err == pytest.approx(a.abs_err + b.abs_err, rel=1e-12)
        assert kept[name].sq_err == pytest.approx(a.sq_err + b.sq_err, rel=1e-12)
        assert kept[name].hits == a.hits + b.hits


def test_a_slow_model_never_makes_the_engine_wait(tmp_path: Path) -> None:
    release = threading.Event()

    class Stuck(ReturnModel):
        def predict(self, x: dict[str, float]) -> tuple[float, float, float]:
            release.wait(30)
            return super().predict(x)

    store = DuckDBStore(tmp_path / "t.duckdb")
    service = ForecastService(store, ManualClock(), max_pending=5, model=Stuck)
    try:
        for k in series(200):
            service.offer(EngineOutput(candles=[k]))  # returns at once, the model stuck or not
        assert service.dropped > 0
        assert service.dropped + service.candles + service._queue.qsize() <= 200  # noqa: SLF001
    finally:
        release.set()
        service.close()
        store.close()
    assert service.candles + service.dropped == 200


def test_forecasts_need_a_store_that_keeps_them() -> None:
    with pytest.raises(ValueError, match="DuckDB and PostgreSQL stores only"):
        start_forecasts(object())
