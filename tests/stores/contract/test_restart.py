"""A restart: the restore point a store hands back (cut-offs, the trades from them on, final
candles and revisions) lets a new engine rebuild its open windows exactly."""

from __future__ import annotations

import random

import pytest
from engine.reference import assert_candles_equal, batch_candles, dedupe

from stores.rows import T0, M, S, candle, trade
from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, Trade, TradeBatch, concat_batches
from tickpipe.runtime.clock import ManualClock
from tickpipe.runtime.stage import EngineStage
from tickpipe.runtime.writer import StoreWriter
from tickpipe.stores.base import SnapshotStore, Store
from tickpipe.verify import verify

MS = 1_000


def test_restore_returns_each_trade_from_the_aligned_cutoff_once_in_time_order(
    store: Store,
) -> None:
    horizon, lateness, align = 6 * S, 2 * S, M
    btc = [trade(i, T0 + i * 700_000) for i in range(400)]  # up to T0 + 279.3 s
    eth = [trade(1000 + i, T0 + i * 400_000, symbol="ETH-USDT", raw="ETHUSDT", trade_id=f"e{i}")
           for i in range(400)]  # up to T0 + 159.6 s  # fmt: skip
    store.write([TradeBatch.from_trades(btc), TradeBatch.from_trades(eth[:200])])
    store.write([TradeBatch.from_trades(eth[200:])])
    cutoff = store.restore_cutoff(horizon, lateness, align)
    assert cutoff == {("ex", "BTC-USDT"): T0 + 3 * M, ("ex", "ETH-USDT"): T0 + M}
    batches = list(store.restore_batches(cutoff, rows=7))
    assert all(len(b) <= 7 for b in batches)
    got = [t for b in batches for t in b.to_trades()]
    want = [t for t in btc + eth if t.ts >= cutoff[(t.exchange, t.symbol)]]
    assert sorted((t.symbol, t.trade_id, t.seq, t.ts, t.price) for t in got) == sorted(
        (t.symbol, t.trade_id, t.seq, t.ts, t.price) for t in want
    )
    assert [t.ts for t in got] == sorted(t.ts for t in got)


def test_restore_of_an_empty_store_is_empty(store: Store) -> None:
    assert store.restore_cutoff(M, 0, M) == {}
    assert list(store.restore_batches({})) == []
    assert store.finals(0) == set() and store.revisions(0) == {}


def test_one_symbol_reached_through_two_spellings_is_restored_once(store: Store) -> None:
    trades = [trade(1, T0, raw="BTCUSDT"), trade(2, T0 + 1, raw="btcusdt", source="other"),
              trade(3, T0 + 2, raw="BTCUSDT")]  # fmt: skip
    store.write(trades=[TradeBatch.from_trades(trades)])
    cutoff = store.restore_cutoff(S, S, S)
    assert sorted(t.seq for t in concat_batches(store.restore_batches(cutoff)).to_trades()) == [
        1, 2, 3,
    ]  # fmt: skip


def test_finals_and_revisions_from_a_time_on(store: Store) -> None:
    store.write(candles=[candle(T0, revision=2, final=True), candle(T0 + M, revision=0),
                         candle(T0 + 2 * M, revision=1, interval="5m", final=True),
                         candle(T0 - M, revision=4, final=True)])  # fmt: skip
    assert store.revisions(T0) == {
        ("ex", "BTC-USDT", "1m", T0): 2,
        ("ex", "BTC-USDT", "5m", T0 + 2 * M): 1,
    }
    assert store.finals(T0) == {("ex", "BTC-USDT", "1m", T0), ("ex", "BTC-USDT", "5m", T0 + 2 * M)}


WINDOWS = ("1s", "3s", "4s/1s")
LATENESS, HORIZON = 500 * MS, 3 * S


def new_engine() -> CandleEngine:
    return CandleEngine(
        EngineConfig(windows=tuple(map(parse_window, WINDOWS)), allowed_lateness=LATENESS,
                     correction_horizon=HORIZON, idle_timeout=S, provisional_every=200 * MS)
    )  # fmt: skip


def stream(seed: int) -> list[tuple[int, list[Trade]]]:
    """Batches of late, shuffled and resent trades on two symbols, with their wall times."""
    rng = random.Random(seed)
    batches: list[tuple[int, list[Trade]]] = []
    sent: list[Trade] = []
    now, n = 0, 0
    for _ in range(60):
        now += rng.randrange(50, 400) * MS
        batch = []
        for _ in range(rng.randrange(0, 6)):
            n += 1
            batch.append(trade(n, T0 + now - rng.randrange(0, LATENESS + HORIZON),
                               symbol=rng.choice(["BTC-USDT", "ETH-USDT"]),
                               price=round(rng.uniform(99, 101), 2),
                               side=rng.choice(["buy", "sell"])))  # fmt: skip
        resendable = [t for t in sent if t.ts >= T0 + now - LATENESS - HORIZON]
        batch += rng.sample(resendable, k=min(2, len(resendable)))
        sent += batch
        rng.shuffle(batch)
        batches.append((now, batch))
    return batches


def play(engine: CandleEngine, part: list[tuple[int, list[Trade]]], store: Store) -> None:
    for at, batch in part:
        outs = [engine.process(TradeBatch.from_trades(batch), T0 + at)] if batch else []
        for out in [*outs, engine.tick(T0 + at)]:
            store.write([out.accepted] if out.accepted else [], out.candles, out.rolling)


def stored(store: Store) -> dict[tuple, Candle]:
    return {(c.exchange, c.symbol, c.interval, c.start): c
            for w in WINDOWS for c in store.stored_candles(parse_window(w).name)}  # fmt: skip


@pytest.mark.parametrize(("seed", "crash_at"), [(11, 35), (12, 20), (13, 50)])
def test_a_restart_restores_open_windows_exactly(store: Store, seed: int, crash_at: int) -> None:
    batches = stream(seed)
    play(new_engine(), batches[:crash_at], store)  # then the process dies: no flush
    before = {k: c.revision for k, c in stored(store).items()}
    assert any(before.values()), "the scenario should have corrected some candle"

    restarted = new_engine()
    align = max(w.size for w in restarted.windows)
    cutoff = store.restore_cutoff(restarted.horizon, LATENESS, align)
    since = min(cutoff.values())
    now = T0 + batches[crash_at][0]
    revisions, finals = store.revisions(since), store.finals(since)
    rewritten = restarted.restore(store.restore_batches(cutoff), cutoff, revisions, now, finals)
    store.write(candles=rewritten)
    assert all(stored(store)[k].revision >= r for k, r in before.items()), "a revision went back"

    play(restarted, batches[crash_at:], store)
    store.write(candles=restarted.flush(T0 + batches[-1][0]))
    sent = dedupe(t for _, b in batches for t in b)
    windows = [(w.name, w.size, w.slide) for w in map(parse_window, WINDOWS)]
    assert_candles_equal(stored(store), batch_candles(sent, windows))
    assert store.duplicate_trades() == 0
    report = verify(store)
    assert report.ok, report.mismatches[:3]
    assert report.trades == len(sent)


def staged(store: Store, clock: ManualClock) -> tuple[EngineStage, StoreWriter]:
    """An engine stage writing to `store`, with an engine snapshot at most every second."""
    writer = StoreWriter(store)
    return EngineStage(new_engine(), writer, DeadLetters(None), clock, 1.0), writer


def play_staged(stage: EngineStage, part: list[tuple[int, list[Trade]]], clock: ManualClock):
    for at, batch in part:
        clock.advance((T0 + at - clock.now_us()) / 1e6)
        if batch:
            stage.process(TradeBatch.from_trades(batch))
        stage.tick()


@pytest.mark.parametrize(("seed", "crash_at"), [(21, 35), (22, 13)])
def test_a_restart_from_the_engine_snapshot_goes_on_exactly(
    store: Store, seed: int, crash_at: int
) -> None:
    # DuckDB and PostgreSQL keep the snapshot with the rows; Cassandra and MongoDB (no
    # multi-row transaction) restart by the horizon replay, to the same candles.
    batches = stream(seed)
    clock = ManualClock(now_us=T0)
    stage, writer = staged(store, clock)
    play_staged(stage, batches[:crash_at], clock)
    writer.close()  # then the process dies: no final flush of the engine, no last snapshot

    stage, writer = staged(store, clock)
    if isinstance(store, SnapshotStore):
        replayed: list[int] = []
        assert stage.restore_snapshot(store, lambda bs: (replayed.append(len(b)) or b for b in bs))
        assert sum(replayed) < sum(len(b) for _, b in batches[:crash_at]) / 2
    else:
        align = max(w.size for w in stage.engine.windows)
        cutoff = store.restore_cutoff(stage.engine.horizon, LATENESS, align)
        stage.restore(store, cutoff, store.restore_batches(cutoff))
    play_staged(stage, batches[crash_at:], clock)
    stage.finish()
    writer.close()
    sent = dedupe(t for _, b in batches for t in b)
    windows = [(w.name, w.size, w.slide) for w in map(parse_window, WINDOWS)]
    assert_candles_equal(stored(store), batch_candles(sent, windows))
    report = verify(store)
    assert report.ok, report.mismatches[:3]
    assert report.trades == len(sent) and report.duplicate_trades == 0
