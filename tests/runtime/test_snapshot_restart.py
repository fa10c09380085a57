"""The embedded restart on a real DuckDB file: from the engine snapshot kept with the rows, or,
when that snapshot is damaged or of another version, from the stored trades with one warning;
either way the candles go on as if the pipeline had never stopped (`tickpipe verify`)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tickpipe.engine.snapshot as snapshot
from tickpipe.config import Config
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine
from tickpipe.records import TradeBatch
from tickpipe.runners.embedded import Pipeline
from tickpipe.runtime.clock import ManualClock
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.writer import REPLAY_FROM, STATE, StoreWriter
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.verify import verify

CONFIG = dict(intervals=["1s", "5s", "1m"], snapshot_every_s=3.0)


S = 1_000_000
T = ManualClock().now_us()  # the first batch's start; batch i holds [T + i s, T + (i + 1) s)


def batches() -> list[TradeBatch]:
    """30 s of trades of 3 symbols, one batch a second."""
    market = MarketSimulator(["BTC-USDT", "ETH-USDT", "SOL-USDT"], 200.0, seed=5)
    return [market.span(T + i * S, T + (i + 1) * S) for i in range(30)]


def drive(pipeline: Pipeline, clock: ManualClock, part: list[TradeBatch], first: int) -> None:
    """Batches `first`, `first + 1`, ... each handed over at its end, as a live feed would."""
    for i, batch in enumerate(part, first):
        clock.advance((T + (i + 1) * S - clock.now_us()) / 1e6)
        pipeline.stage.process(batch)
        pipeline.stage.tick()


def first_run(tmp_path: Path) -> None:
    """A pipeline that stores the first 20 s and dies as a kill -9 after its last flush leaves
    it: the rows written, no shutdown snapshot."""
    clock = ManualClock(now_us=T)
    pipeline = Pipeline(Config(data_dir=str(tmp_path), **CONFIG), [], "demo", clock=clock)
    assert pipeline.restore()
    drive(pipeline, clock, batches()[:20], 0)
    pipeline.writer.close()
    pipeline.store.close()
    pipeline.monitor.close()
    pipeline.dead_letters.close()


def second_run(tmp_path: Path, lines: list[str]) -> None:
    """A restart at 20 s that takes the last 10 s and stops cleanly."""
    clock = ManualClock(now_us=T + 20 * S)
    pipeline = Pipeline(Config(data_dir=str(tmp_path), **CONFIG), [], "demo", clock=clock)
    try:
        assert pipeline.restore(lines.append)
        drive(pipeline, clock, batches()[20:], 20)
        pipeline.stage.finish()
    finally:
        pipeline.close()


def never_stopped() -> dict[tuple, tuple]:
    """The last version of each candle of an engine that took all 30 s in one go."""
    engine = CandleEngine(Config(**CONFIG).engine_config())
    candles = []
    for i, batch in enumerate(batches()):
        candles += engine.process(batch, T + (i + 1) * S).candles
        candles += engine.tick(T + (i + 1) * S).candles
    candles += engine.flush(T + 30 * S)
    return {(c.exchange, c.symbol, c.interval, c.start): (c.open, c.high, c.low, c.close,
            c.volume, c.trades, c.first_seq, c.last_seq) for c in candles}  # fmt: skip


def assert_same(got: dict[tuple, tuple], expected: dict[tuple, tuple]) -> None:
    """The same candles; sums equal up to float rounding (a replay adds in other batches)."""
    assert set(got) == set(expected)
    flat = {(k, i): v for k, values in expected.items() for i, v in enumerate(values)}
    assert {(k, i): v for k, values in got.items() for i, v in enumerate(values)} == (
        pytest.approx(flat, rel=1e-12)
    )


def stored_candles(tmp_path: Path) -> dict[tuple, tuple]:
    store = DuckDBStore(tmp_path / "tickpipe.duckdb", read_only=True)
    try:
        rows = store.query(
            "SELECT exchange, symbol, interval, start, open, high, low, close, volume, trades, "
            "first_seq, last_seq FROM candles"
        )
        report = verify(store)
    finally:
        store.close()
    assert report.ok, report.mismatches[:3]
    assert report.duplicate_trades == 0
    return {tuple(r[:4]): tuple(r[4:]) for r in rows}


def test_a_restart_loads_the_snapshot_replays_only_what_came_after_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_run(tmp_path)
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    parts = store.load_snapshot()
    store.close()
    assert set(parts) == {STATE, REPLAY_FROM}
    replayed: list[int] = []
    real = DuckDBStore.restore_batches

    def counted(self, cutoff, rows=500_000):
        for batch in real(self, cutoff, rows):
            replayed.append(len(batch))
            yield batch

    monkeypatch.setattr(DuckDBStore, "restore_batches", counted)
    lines: list[str] = []
    second_run(tmp_path, lines)

    assert lines == []  # no "restoring ... from the stored trades": the snapshot did it
    # Snapshots every 3 s of a 20 s run: at most the last 3 s of trades come back.
    assert 0 < sum(replayed) <= sum(len(b) for b in batches()[17:20])
    assert_same(stored_candles(tmp_path), never_stopped())


@pytest.mark.parametrize("fault", ["damaged", "older version"])
def test_an_unusable_snapshot_falls_back_to_the_replay_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    first_run(tmp_path)
    if fault == "damaged":
        store = DuckDBStore(tmp_path / "tickpipe.duckdb")
        (blob,) = store.query("SELECT data FROM engine_snapshot WHERE part = ?", [STATE])[0]
        flipped = blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:]
        store.query("UPDATE engine_snapshot SET data = ? WHERE part = ?", [flipped, STATE])
        store.close()
    else:
        monkeypatch.setattr(snapshot, "VERSION", snapshot.VERSION + 1)
    lines: list[str] = []
    second_run(tmp_path, lines)

    warnings = [line for line in lines if "snapshot" in line]
    assert len(warnings) == 1, lines
    why = "checksum mismatch" if fault == "damaged" else "format version"
    assert why in warnings[0] and "restoring from the stored trades instead" in warnings[0]
    assert "\n" not in warnings[0]
    assert any("from the stored trades (Ctrl-C stops)" in line for line in lines)
    assert_same(stored_candles(tmp_path), never_stopped())


def test_a_writer_that_takes_no_snapshot_deletes_the_stored_one_with_its_first_rows(
    tmp_path: Path,
) -> None:
    # A Kafka processor writing to the store of an earlier embedded run: the rows it adds
    # are not in that snapshot, so an embedded restart must not load it.
    first_run(tmp_path)
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    clock = ManualClock()
    writer = StoreWriter(store)
    stage = EngineStage(CandleEngine(Config(**CONFIG).engine_config()), writer,
                        DeadLetters(None), clock)  # fmt: skip
    stage.process(MarketSimulator(["BTC-USDT"], 100.0, seed=1).span(T + 30 * S, T + 31 * S))
    writer.close()
    assert store.load_snapshot() == {}
    store.close()
