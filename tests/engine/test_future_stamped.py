"""Future-stamped trades (event time well after local receipt: a venue's clock ahead) and the
per-instrument counts the data-quality view reads from the engine."""

from __future__ import annotations

import msgspec

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Trade, TradeBatch

from .reference import assert_candles_equal, batch_candles, latest
from .test_candles import BTC, ETH, MS, T0, S, feed, finals, trade


def engine(tolerance: int = 5 * S) -> CandleEngine:
    config = EngineConfig(
        windows=(parse_window("1s"),), allowed_lateness=0, idle_timeout=3600 * S,
        provisional_every=0, future_tolerance=tolerance,
    )  # fmt: skip
    return CandleEngine(config)


def received(t: Trade, recv: int) -> Trade:
    """`t` as received at T0 + `recv` (its event time unchanged)."""
    return msgspec.structs.replace(t, recv_ts=T0 + recv)


def test_a_future_stamped_trade_does_not_advance_the_watermark() -> None:
    e = engine()
    feed(e, [trade(100 * MS, 1.0)], 100 * MS)
    assert e.watermark(BTC) == T0 + 100 * MS
    ahead = received(trade(10 * S, 99.0), 200 * MS)  # stamped 9.8 s after its receipt
    out = feed(e, [ahead], 200 * MS)
    assert e.watermark(BTC) == T0 + 100 * MS  # the 10 s stamp would have closed [0, 1 s)
    assert finals(out) == []
    state = e.states[0]
    assert (state.future, state.trades, state.last_price) == (1, 2, 1.0)
    # kept: its own window holds it
    assert [(c.start - T0, c.close, c.final) for c in out.candles] == [(10 * S, 99.0, False)]
    out = feed(e, [trade(1500 * MS, 2.0)], 1500 * MS)  # a sound trade moves time on
    assert e.watermark(BTC) == T0 + 1500 * MS
    assert finals(out) == [("BTC-USDT", 0)]


def test_a_trade_stamped_ahead_within_the_tolerance_advances_the_watermark() -> None:
    e = engine(tolerance=5 * S)
    feed(e, [trade(100 * MS, 1.0)], 100 * MS)
    out = feed(e, [received(trade(3 * S, 2.0), 100 * MS)], 100 * MS)  # 2.9 s ahead
    assert e.watermark(BTC) == T0 + 3 * S
    assert finals(out) == [("BTC-USDT", 0)]
    assert e.states[0].future == 0


def test_future_stamped_trades_in_one_batch_leave_the_watermark_at_the_newest_sound_one() -> None:
    e = engine(tolerance=1 * S)
    trades = [
        trade(300 * MS, 1.0), received(trade(9 * S, 5.0), 400 * MS), trade(400 * MS, 2.0),
        received(trade(20 * S, 6.0, instrument=ETH), 0),  # ETH: only a future trade
        received(trade(8 * S, 7.0), 450 * MS),
    ]  # fmt: skip
    out = e.process(TradeBatch.from_trades(trades), T0 + 500 * MS)
    assert e.watermark(BTC) == T0 + 400 * MS
    assert e.watermark(ETH) is None
    btc, eth = e.states
    assert (btc.future, btc.last_price, btc.last_ts) == (2, 2.0, T0 + 400 * MS)
    assert (eth.future, eth.trades) == (1, 1)
    # every trade is in the candles, as a batch recomputation over them all says
    assert_candles_equal(latest(out.candles), batch_candles(trades, [("1s", S, S)]))


def test_duplicates_are_counted_per_instrument() -> None:
    e = engine()
    a, b = trade(100 * MS, 1.0), trade(200 * MS, 2.0, instrument=ETH)
    feed(e, [a, b], 200 * MS)
    out = feed(e, [a, a, b, trade(300 * MS, 3.0)], 300 * MS)
    assert out.duplicates == 3  # a twice, b once: each was accepted in the first batch
    btc, eth = e.states
    assert (btc.duplicates, eth.duplicates) == (2, 1)
