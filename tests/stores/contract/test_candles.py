"""Candles: whole-row upserts keyed (exchange, symbol, interval, start) where a newer revision
wins and an older one is ignored; range reads; re-bucketing to a multiple of the stored size."""

from __future__ import annotations

import random

import pytest
from engine.reference import APPROX, EXACT

from stores.rows import T0, M, S, candle, trade
from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, Trade, TradeBatch
from tickpipe.stores.base import Store


def stored_candle(store: Store, start: int) -> Candle:
    (c,) = store.candles("ex", "BTC-USDT", "1m", start, start + 1)
    return c


def test_candles_round_trip(store: Store) -> None:
    candles = [candle(T0), candle(T0 + M, final=True, revision=2, trades=7, close=1.75),
               candle(T0, interval="5m"), candle(T0, symbol="ETH-USDT")]  # fmt: skip
    store.write(candles=candles)
    assert store.candles("ex", "BTC-USDT", "1m") == candles[:2]
    assert store.candles("ex", "BTC-USDT", "5m") == [candles[2]]
    assert store.candles("ex", "ETH-USDT", "1m") == [candles[3]]
    assert store.intervals() == ["1m", "5m"]
    assert list(store.stored_candles("1m")) == [candles[0], candles[1], candles[3]]


def test_range_reads_take_start_in_start_inclusive_end_exclusive(store: Store) -> None:
    candles = [candle(T0 + k * M) for k in range(4)]
    store.write(candles=candles)
    assert store.candles("ex", "BTC-USDT", "1m", start=T0 + 1) == candles[1:]
    assert store.candles("ex", "BTC-USDT", "1m", end=T0 + M) == candles[:1]
    assert store.candles("ex", "BTC-USDT", "1m", T0 + M, T0 + 3 * M) == candles[1:3]
    assert store.candles("ex", "BTC-USDT", "1m", T0 + 9 * M) == []
    assert store.candles("ex", "NOPE", "1m") == []


def test_writing_the_same_candles_twice_leaves_one_row_each(store: Store) -> None:
    candles = [candle(T0 + k * M) for k in range(3)]
    store.write(candles=candles)
    store.write(candles=candles)
    assert store.totals()["stored_candles"] == 3
    assert store.candles("ex", "BTC-USDT", "1m") == candles


def test_a_later_provisional_update_replaces_the_whole_row(store: Store) -> None:
    store.write(candles=[candle(T0, trades=3, close=1.5)])
    later = candle(T0, trades=9, close=1.9, high=2.5, volume=8.0, last_seq=30, updated_at=T0 + 9)
    store.write(candles=[later])
    assert stored_candle(store, T0) == later


def test_a_final_candle_replaces_its_provisional_row(store: Store) -> None:
    store.write(candles=[candle(T0)])
    final = candle(T0, final=True, trades=4, updated_at=T0 + 70 * S)
    store.write(candles=[final])
    assert stored_candle(store, T0) == final


def test_a_stale_provisional_update_never_overwrites_the_final_candle(store: Store) -> None:
    final = candle(T0, final=True, trades=4)
    store.write(candles=[final])
    store.write(candles=[candle(T0, final=False, trades=2, updated_at=T0 + 99 * S)])
    assert stored_candle(store, T0) == final


def test_an_older_revision_never_overwrites_a_newer_one(store: Store) -> None:
    corrected = candle(T0, final=True, revision=2, trades=6, close=1.1)
    store.write(candles=[corrected])
    for older in (candle(T0, final=True, revision=1, trades=5),
                  candle(T0, final=True, revision=0, trades=4),
                  candle(T0, final=False, revision=1, trades=9)):  # fmt: skip
        store.write(candles=[older])
    assert stored_candle(store, T0) == corrected


def test_a_newer_revision_replaces_the_whole_row(store: Store) -> None:
    store.write(candles=[candle(T0, final=True), candle(T0 + M)])
    newer = candle(T0, open=9.0, high=9.5, low=0.1, close=0.2, volume=30.0, quote_volume=1.0,
                   vwap=7.0, mean_price=6.0, trades=30, buy_volume=11.0, sell_volume=12.0,
                   first_seq=1, last_seq=99, final=True, revision=1, updated_at=T0 + 5)  # fmt: skip
    store.write(candles=[newer])
    assert store.candles("ex", "BTC-USDT", "1m") == [newer, candle(T0 + M)]
    assert store.revisions(T0) == {("ex", "BTC-USDT", "1m", T0): 1}
    assert store.finals(T0) == {("ex", "BTC-USDT", "1m", T0)}


def test_the_last_update_of_a_candle_in_one_write_wins(store: Store) -> None:
    updates = [candle(T0, trades=1), candle(T0, trades=2), candle(T0, trades=3, final=True)]
    store.write(candles=updates)
    assert store.candles("ex", "BTC-USDT", "1m") == [updates[-1]]


# -- re-bucketing -------------------------------------------------------------------------


def _engine_candles(trades: list[Trade], window: str) -> list[Candle]:
    e = CandleEngine(EngineConfig(windows=(parse_window(window),), allowed_lateness=0))
    out = e.process(TradeBatch.from_trades(trades), T0)
    closing = e.tick(T0 + 3600 * S)  # the idle timer closes the last windows
    candles = {c.start: c for c in [*out.candles, *closing.candles]}
    assert all(c.final for c in candles.values())
    return [candles[k] for k in sorted(candles)]


@pytest.mark.parametrize(("bucket", "name"), [(5 * S, "5s"), (M, "1m"), (15 * S, "15s")])
def test_rebucketed_1s_candles_equal_candles_computed_at_that_size(
    store: Store, bucket: int, name: str
) -> None:
    rng = random.Random(bucket)
    trades = [
        trade(i, T0 + rng.randrange(0, 3 * M), price=round(rng.uniform(90, 110), 2),
              size=rng.randrange(1, 100) / 7, side=rng.choice(["buy", "sell", "unknown"]))
        for i in range(400)
    ]  # fmt: skip
    direct = _engine_candles(trades, name)
    store.write(candles=_engine_candles(trades, "1s"))
    rolled = store.candles("ex", "BTC-USDT", "1s", bucket=bucket, interval_size=S)
    assert [c.start for c in rolled] == [c.start for c in direct]
    for got, want in zip(rolled, direct, strict=True):
        assert got.interval == name
        assert (got.exchange, got.symbol) == ("ex", "BTC-USDT")
        for f in EXACT:
            assert getattr(got, f) == getattr(want, f), (got.start, f)
        for f in APPROX:
            assert getattr(got, f) == pytest.approx(getattr(want, f), rel=1e-9), (got.start, f)


def test_rebucketing_a_range_keeps_whole_buckets(store: Store) -> None:
    store.write(candles=[candle(T0 + k * S, interval="1s", trades=1, final=k < 7)
                         for k in range(10)])  # fmt: skip
    rolled = store.candles("ex", "BTC-USDT", "1s", start=T0 + 5 * S, bucket=5 * S,
                           interval_size=S)  # fmt: skip
    assert [(c.start - T0, c.trades, c.final) for c in rolled] == [(5 * S, 5, False)]
    rolled = store.candles("ex", "BTC-USDT", "1s", bucket=5 * S, interval_size=S)
    assert [(c.start - T0, c.trades, c.final) for c in rolled] == [(0, 5, True), (5 * S, 5, False)]


def test_a_bucket_that_is_not_a_multiple_of_the_interval_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="multiple"):
        store.candles("ex", "BTC-USDT", "5s", bucket=7 * S, interval_size=5 * S)
