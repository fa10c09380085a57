"""CandleEngine unit tests: ordering, de-duplication, closing, idle timer, throttling,
corrections, late trades, hopping windows, rolling statistics and restore after a crash."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tickpipe.engine.candles import CandleEngine, EngineConfig, EngineOutput
from tickpipe.engine.windows import parse_window
from tickpipe.records import (
    Candle,
    Instrument,
    RollingStat,
    Trade,
    TradeBatch,
    concat_batches,
)
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.verify import verify

from .reference import assert_candles_equal, batch_candles, candle_of, dedupe, latest

MS = 1_000
S = 1_000_000
M = 60 * S
T0 = 1_700_000_040 * S  # 2023-11-14T22:14:00Z: aligned to every window used here
BTC = Instrument("ex", "BTC-USDT")
ETH = Instrument("ex", "ETH-USDT")


def engine(
    *windows: str,
    lateness: int = 0,
    horizon: int | None = None,
    idle: int = 3600 * S,
    every: int = 0,
) -> CandleEngine:
    return CandleEngine(
        EngineConfig(
            windows=tuple(parse_window(w) for w in windows or ("1s",)),
            allowed_lateness=lateness,
            correction_horizon=horizon,
            idle_timeout=idle,
            provisional_every=every,
        )
    )


_ids = iter(range(10**6, 10**9))  # far from the small seqs tests choose


def trade(
    ts: int,
    price: float = 100.0,
    *,
    seq: int | None = None,
    trade_id: str | None = None,
    size: float = 1.0,
    side: str = "buy",
    instrument: Instrument = BTC,
) -> Trade:
    seq = next(_ids) if seq is None else seq
    return Trade(
        source=instrument.exchange,
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        raw_symbol=instrument.raw_symbol,
        trade_id=str(seq) if trade_id is None else trade_id,
        seq=seq,
        price=price,
        size=size,
        side=side,
        ts=T0 + ts,
        recv_ts=T0 + ts,
    )


def feed(e: CandleEngine, trades: list[Trade], now: int) -> EngineOutput:
    return e.process(TradeBatch.from_trades(trades), T0 + now)


def only(candles: list[Candle], interval: str | None = None, start: int | None = None) -> Candle:
    """The one candle (of `interval` starting at T0 + `start`) in `candles`."""
    found = [
        c
        for c in candles
        if (interval is None or c.interval == interval) and (start is None or c.start == T0 + start)
    ]
    assert len(found) == 1, found
    return found[0]


def finals(out: EngineOutput) -> list[tuple[str, int]]:
    return sorted((c.symbol, c.start - T0) for c in out.candles if c.final)


def keys(trades: list[Trade]) -> list[tuple[str, str, str]]:
    return sorted((t.exchange, t.symbol, t.trade_id) for t in trades)


# -- open and close by (ts, seq), never by arrival ----------------------------------------


def test_open_and_close_follow_event_time_not_arrival_within_a_batch() -> None:
    e = engine(lateness=10 * S)
    out = feed(e, [trade(900 * MS, 9.0, seq=9), trade(100 * MS, 1.0, seq=1),
                   trade(500 * MS, 5.0, seq=5)], 1 * S)  # fmt: skip
    c = only(out.candles)
    assert (c.open, c.close, c.high, c.low) == (1.0, 9.0, 9.0, 1.0)
    assert (c.first_seq, c.last_seq, c.trades) == (1, 9, 3)


def test_open_and_close_follow_event_time_across_batches() -> None:
    e = engine(lateness=10 * S)
    feed(e, [trade(500 * MS, 5.0, seq=5)], 600 * MS)
    feed(e, [trade(900 * MS, 9.0, seq=9)], 950 * MS)
    feed(e, [trade(100 * MS, 1.0, seq=1)], 1000 * MS)  # earliest, arriving last
    out = feed(e, [trade(700 * MS, 7.0, seq=7)], 1010 * MS)
    c = only(out.candles)
    assert (c.open, c.close, c.first_seq, c.last_seq, c.trades) == (1.0, 9.0, 1, 9, 4)


def test_equal_timestamps_are_ordered_by_seq() -> None:
    e = engine(lateness=10 * S)
    feed(e, [trade(500 * MS, 3.0, seq=30), trade(500 * MS, 2.0, seq=20)], 1 * S)
    out = feed(e, [trade(500 * MS, 1.0, seq=10), trade(500 * MS, 4.0, seq=40)], 1 * S)
    c = only(out.candles)
    assert (c.open, c.close, c.first_seq, c.last_seq) == (1.0, 4.0, 10, 40)


def test_candle_sums_and_sides() -> None:
    e = engine(lateness=10 * S)
    trades = [
        trade(100 * MS, 10.0, size=2.0, side="buy"),
        trade(200 * MS, 20.0, size=1.0, side="sell"),
        trade(300 * MS, 40.0, size=1.0, side="unknown"),
    ]
    c = only(feed(e, trades, 1 * S).candles)
    assert (c.volume, c.quote_volume, c.buy_volume, c.sell_volume) == (4.0, 80.0, 2.0, 1.0)
    assert c.vwap == 20.0
    assert c.mean_price == pytest.approx(70.0 / 3)
    assert (c.exchange, c.symbol, c.interval, c.start) == ("ex", "BTC-USDT", "1s", T0)


# -- duplicates ----------------------------------------------------------------------------


def test_a_duplicate_in_the_same_batch_is_dropped() -> None:
    e = engine(lateness=10 * S)
    t = trade(100 * MS, 1.0)
    out = feed(e, [t, trade(200 * MS, 2.0), t], 1 * S)
    assert out.duplicates == 1
    assert len(out.accepted) == 2
    assert only(out.candles).trades == 2


def test_a_duplicate_in_a_later_batch_is_dropped() -> None:
    e = engine(lateness=10 * S)
    t = trade(100 * MS, 1.0, seq=77)
    feed(e, [t], 200 * MS)
    out = feed(e, [trade(300 * MS, 3.0, seq=78), t], 400 * MS)
    assert out.duplicates == 1
    assert [x.seq for x in out.accepted.to_trades()] == [78]
    assert only(out.candles).trades == 2


def test_text_ids_dedupe_even_when_the_resent_copy_has_another_seq() -> None:
    e = engine(lateness=10 * S)
    first = trade(100 * MS, 1.0, seq=1, trade_id="a1b2-c3d4")
    feed(e, [first, trade(150 * MS, 1.5, seq=2, trade_id="zz-9")], 200 * MS)
    feed(e, [trade(300 * MS, 3.0, seq=3, trade_id="q")], 400 * MS)
    resent = trade(100 * MS, 1.0, seq=4, trade_id="a1b2-c3d4")  # arrival order: new seq
    out = feed(e, [resent, trade(150 * MS, 1.5, seq=5, trade_id="zz-9")], 500 * MS)
    assert out.duplicates == 2
    assert out.accepted is None
    assert out.candles == []  # nothing changed


def test_the_same_id_on_another_symbol_or_exchange_is_another_trade() -> None:
    e = engine(lateness=10 * S)
    other_exchange = Instrument("ex2", "BTC-USDT")
    out = feed(
        e,
        [trade(100 * MS, seq=5), trade(100 * MS, seq=5, instrument=ETH),
         trade(100 * MS, seq=5, instrument=other_exchange)],
        200 * MS,
    )  # fmt: skip
    assert out.duplicates == 0
    assert len(out.accepted) == 3
    assert sorted((c.exchange, c.symbol) for c in out.candles) == [
        ("ex", "BTC-USDT"), ("ex", "ETH-USDT"), ("ex2", "BTC-USDT"),
    ]  # fmt: skip


def test_one_symbol_spelled_two_ways_by_its_feeds_is_one_candle_and_dedupes() -> None:
    """Candles are keyed (exchange, symbol, interval, start) and trades (exchange, symbol,
    trade_id): the venue's raw spelling of the symbol must not split them."""
    e = engine(lateness=10 * S)
    direct = Instrument("binance", "BTC-USDT", "BTCUSDT")
    via_other_feed = Instrument("binance", "BTC-USDT", "btcusdt")
    out = feed(
        e,
        [trade(100 * MS, 1.0, seq=1, instrument=direct),
         trade(200 * MS, 2.0, seq=2, instrument=via_other_feed),
         trade(100 * MS, 1.0, seq=1, instrument=via_other_feed)],
        300 * MS,
    )  # fmt: skip
    assert out.duplicates == 1
    candles = [*out.candles, *e.flush(T0 + S)]
    assert len({(c.exchange, c.symbol, c.interval, c.start) for c in candles}) == 1
    assert [c.trades for c in candles] == [2] * len(candles)


# -- closing: the watermark, then the idle timer ---------------------------------------------


def test_a_window_closes_when_the_watermark_passes_its_end() -> None:
    e = engine("1s", lateness=1 * S)
    out = feed(e, [trade(500 * MS, 1.0)], 500 * MS)
    assert finals(out) == []
    out = feed(e, [trade(1900 * MS, 2.0)], 1900 * MS)  # watermark 0.9 s
    assert finals(out) == []
    assert e.watermark(BTC) == T0 + 900 * MS
    out = feed(e, [trade(2000 * MS, 3.0)], 2000 * MS)  # watermark 1.0 s: [0, 1 s) ends
    assert finals(out) == [("BTC-USDT", 0)]
    c = only(out.candles, start=0)
    assert (c.final, c.trades, c.close, c.revision) == (True, 1, 1.0, 0)
    out = feed(e, [trade(2900 * MS, 4.0)], 2900 * MS)
    assert finals(out) == []
    out = feed(e, [trade(3000 * MS, 5.0)], 3000 * MS)
    assert finals(out) == [("BTC-USDT", 1 * S)]


def test_a_trade_within_the_allowed_lateness_lands_before_its_window_closes() -> None:
    e = engine("1s", lateness=1 * S)
    feed(e, [trade(1500 * MS, 1.0)], 1500 * MS)
    feed(e, [trade(1900 * MS, 2.0)], 1900 * MS)
    feed(e, [trade(950 * MS, 0.5)], 1950 * MS)  # late by 0.95 s: within the lateness
    out = feed(e, [trade(2000 * MS, 3.0)], 2000 * MS)
    c = only(out.candles, start=0)
    assert (c.final, c.revision, c.trades, c.close) == (True, 0, 1, 0.5)


def test_the_idle_timer_closes_a_quiet_symbol_while_another_keeps_trading() -> None:
    e = engine("1s", lateness=500 * MS, idle=1 * S)
    feed(e, [trade(500 * MS, 1.0, instrument=ETH)], 500 * MS)
    closed_eth = []
    for k in range(6, 31):  # BTC trades every 100 ms from 0.6 s to 3 s
        now = k * 100 * MS
        out = feed(e, [trade(now, 2.0)], now)
        closed_eth += [start for symbol, start in finals(out) if symbol == "ETH-USDT"]
        out = e.tick(T0 + now)
        closed_eth += [start for symbol, start in finals(out) if symbol == "ETH-USDT"]
        if now < 1500 * MS:  # ETH idle for less than 1 s: its window stays open
            assert closed_eth == [], now
    assert closed_eth == [0]
    assert e.watermark(ETH) is not None and e.watermark(ETH) >= T0 + 1 * S
    assert e.watermark(ETH) <= T0 + 3 * S - 500 * MS  # never ahead of what the clock allows


def test_the_idle_timer_closes_the_windows_of_the_only_symbol() -> None:
    e = engine("1s", "5s", lateness=500 * MS, idle=1 * S)
    feed(e, [trade(700 * MS, 1.0)], 700 * MS)
    assert finals(e.tick(T0 + 1600 * MS)) == []  # idle 0.9 s: not yet
    out = e.tick(T0 + 2 * S)  # idle 1.3 s: the clock says 2 s, the watermark 1.5 s
    assert [(c.interval, c.start - T0) for c in out.candles if c.final] == [("1s", 0)]
    out = e.tick(T0 + 5400 * MS)  # watermark 4.9 s: the 5 s window is still open
    assert finals(out) == []
    out = e.tick(T0 + 5500 * MS)
    assert [(c.interval, c.start - T0) for c in out.candles if c.final] == [("5s", 0)]
    assert e.open_windows() == 0


def test_an_outage_of_the_input_is_not_idle_time() -> None:
    """The Kafka processor restarts the idle timers when the brokers come back: the trades
    ingest held during the outage come then, with their event times, and must not be late."""
    e = engine("1s", lateness=500 * MS, idle=1 * S)
    feed(e, [trade(700 * MS, 1.0)], 700 * MS)
    e.restart_idle_timers(T0 + 10 * S)  # the brokers were away from 0.7 s to 10 s
    assert finals(e.tick(T0 + 10900 * MS)) == []  # idle 0.9 s since they came back
    assert e.watermark(BTC) == T0 + 200 * MS
    out = feed(e, [trade(900 * MS, 2.0)], 10950 * MS)  # held back by the outage
    assert out.late is None or len(out.late) == 0
    out = e.tick(T0 + 12 * S)  # quiet 1.05 s since its last trade: the clock says 1.95 s
    assert [(c.start - T0, c.close) for c in out.candles if c.final] == [(0, 2.0)]


def test_another_venues_clock_does_not_make_a_quiet_symbols_trades_late() -> None:
    """The watermark is per (exchange, symbol): when ex2's clock runs ten minutes ahead (or
    sends one bad timestamp), ex's quiet symbol must not jump there and dead-letter its
    on-time trades."""
    e = engine("1s", "1m", lateness=2 * S, idle=2 * S)
    ahead = Instrument("ex2", "BTC-USDT")
    feed(e, [trade(500 * MS, 1.0)], 600 * MS)
    feed(e, [trade(10 * M, 1.0, instrument=ahead)], 700 * MS)
    e.tick(T0 + 3 * S)  # ex BTC-USDT has been quiet for 2.4 s
    assert e.watermark(BTC) <= T0 + 3 * S - 2 * S  # the clock allows no more
    on_time = trade(3100 * MS, 2.0)
    out = feed(e, [on_time], 3200 * MS)
    assert out.late is None
    assert keys(out.accepted.to_trades()) == keys([on_time])


def test_ticks_never_close_a_window_before_its_time() -> None:
    e = engine("1s", lateness=500 * MS, idle=100 * MS)
    feed(e, [trade(100 * MS, 1.0)], 100 * MS)
    for now in range(200, 1500, 100):
        assert finals(e.tick(T0 + now * MS)) == [], now
    assert finals(e.tick(T0 + 1500 * MS)) == [("BTC-USDT", 0)]


# -- provisional updates and final candles -------------------------------------------------


def test_provisional_updates_are_throttled_per_candle() -> None:
    e = engine("1s", lateness=10 * S, every=250 * MS)
    out = feed(e, [trade(0, 1.0)], 0)
    assert [(c.trades, c.final) for c in out.candles] == [(1, False)]  # the first at once
    assert feed(e, [trade(100 * MS, 2.0)], 100 * MS).candles == []
    # ETH's first candle is not held back by BTC's throttle.
    out = feed(e, [trade(150 * MS, 5.0, instrument=ETH), trade(200 * MS, 3.0)], 200 * MS)
    assert [(c.symbol, c.trades) for c in out.candles] == [("ETH-USDT", 1)]
    assert e.tick(T0 + 240 * MS).candles == []
    out = e.tick(T0 + 250 * MS)
    assert [(c.symbol, c.trades, c.close, c.final) for c in out.candles] == [
        ("BTC-USDT", 3, 3.0, False)
    ]
    assert e.tick(T0 + 300 * MS).candles == []  # nothing changed: nothing sent


def test_the_final_candle_is_sent_when_the_window_closes_even_if_throttled() -> None:
    e = engine("1s", lateness=0, every=10 * S)
    feed(e, [trade(100 * MS, 1.0)], 100 * MS)
    assert feed(e, [trade(900 * MS, 2.0)], 900 * MS).candles == []
    out = feed(e, [trade(1000 * MS, 3.0)], 1000 * MS)
    c = only(out.candles, start=0)
    assert (c.final, c.trades, c.close) == (True, 2, 2.0)


def test_flush_sends_every_unsent_change() -> None:
    e = engine("1s", lateness=10 * S, every=10 * S)
    feed(e, [trade(100 * MS, 1.0)], 100 * MS)  # a candle's first update goes out at once
    # The next candle opens: the first one's change goes out at once (it has passed), ...
    feed(e, [trade(1100 * MS, 2.0), trade(200 * MS, 3.0)], 1100 * MS)
    # ...and after that both are throttled.
    assert feed(e, [trade(1200 * MS, 5.0), trade(150 * MS, 4.0)], 1200 * MS).candles == []
    flushed = e.flush(T0 + 1300 * MS)
    assert sorted((c.start - T0, c.trades, c.close, c.final) for c in flushed) == [
        (0, 3, 3.0, False), (1 * S, 2, 5.0, False),
    ]  # fmt: skip
    assert e.flush(T0 + 1400 * MS) == []


def test_an_open_candle_goes_out_at_once_when_the_next_one_of_its_instrument_opens() -> None:
    e = engine("1s", lateness=10 * S, every=10 * S)
    feed(e, [trade(100 * MS, 1.0), trade(100 * MS, 1.0, instrument=ETH)], 100 * MS)
    feed(e, [trade(900 * MS, 2.0), trade(900 * MS, 2.0, instrument=ETH)], 900 * MS)
    out = feed(e, [trade(1100 * MS, 3.0)], 1100 * MS)  # BTC's next second opens
    sent = sorted((c.symbol, c.start - T0, c.trades, c.close, c.final) for c in out.candles)
    # BTC's passed candle with its last trade, not 10 s later; ETH's is still throttled.
    assert sent == [("BTC-USDT", 0, 2, 2.0, False), ("BTC-USDT", 1 * S, 1, 3.0, False)]
    out = feed(e, [trade(950 * MS, 4.0), trade(1200 * MS, 5.0)], 1200 * MS)
    assert out.candles == []  # after that, its changes are throttled again


# -- late trades: corrections within the horizon, dead letters beyond it ---------------------


def test_a_late_trade_within_the_horizon_reissues_the_final_candle_with_revision_plus_one() -> None:
    e = engine("1s", lateness=0, horizon=5 * S)
    feed(e, [trade(500 * MS, 1.0, seq=10)], 500 * MS)
    out = feed(e, [trade(1500 * MS, 2.0, seq=20)], 1500 * MS)
    assert only(out.candles, start=0).final
    out = feed(e, [trade(600 * MS, 3.0, seq=11)], 1600 * MS)
    c = only(out.candles, start=0)
    assert (c.final, c.revision, c.trades, c.close, c.last_seq) == (True, 1, 2, 3.0, 11)
    assert out.late is None
    # Two more late trades in one batch: one more revision.
    out = feed(e, [trade(100 * MS, 0.5, seq=9), trade(700 * MS, 4.0, seq=12)], 1700 * MS)
    c = only(out.candles, start=0)
    assert (c.revision, c.trades, c.open, c.close) == (2, 4, 0.5, 4.0)
    assert e.corrections == 2


def test_a_correction_is_sent_at_once_even_right_after_the_final_candle_was_sent() -> None:
    # Open updates are throttled to one per 10 s; a correction of a final candle is not.
    e = engine("1s", lateness=0, horizon=5 * S, every=10 * S)
    feed(e, [trade(500 * MS, 1.0, seq=10)], 500 * MS)
    out = feed(e, [trade(1500 * MS, 2.0, seq=20)], 1500 * MS)
    assert only(out.candles, start=0).final
    out = feed(e, [trade(600 * MS, 3.0, seq=11)], 1600 * MS)
    c = only(out.candles, start=0)
    assert (c.final, c.revision, c.trades, c.close, c.updated_at) == (
        True,
        1,
        2,
        3.0,
        T0 + 1600 * MS,
    )
    # The open window of 1 s, sent at 1.5 s, changes again: held back until 11.5 s.
    assert feed(e, [trade(1700 * MS, 4.0, seq=21)], 1700 * MS).candles == []
    assert e.tick(T0 + 11_499 * MS).candles == []
    c = only(e.tick(T0 + 11_500 * MS).candles, start=1 * S)
    assert (c.final, c.trades, c.close) == (False, 2, 4.0)


def test_a_late_trade_into_a_window_that_had_no_trades_is_sent_final() -> None:
    e = engine("1s", lateness=0, horizon=5 * S)
    feed(e, [trade(3500 * MS, 1.0)], 3500 * MS)
    out = feed(e, [trade(1500 * MS, 2.0)], 3600 * MS)
    c = only(out.candles, start=1 * S)
    assert (c.final, c.revision, c.trades) == (True, 0, 1)


def test_a_trade_older_than_watermark_minus_horizon_comes_back_late() -> None:
    e = engine("1s", lateness=500 * MS, horizon=2 * S)
    feed(e, [trade(500 * MS, 1.0)], 500 * MS)
    feed(e, [trade(5 * S, 2.0)], 5 * S)  # watermark 4.5 s: corrections back to 2.5 s
    on_time = trade(2500 * MS, 3.0)
    too_late = trade(2499 * MS, 4.0)
    out = feed(e, [too_late, on_time], 5100 * MS)
    assert keys(out.late.to_trades()) == keys([too_late])
    assert keys(out.accepted.to_trades()) == keys([on_time])
    assert out.duplicates == 0
    assert [(c.start - T0, c.trades) for c in out.candles] == [(2 * S, 1)]
    # A resend of a trade beyond the horizon is late too, not "new".
    again = feed(e, [too_late], 5200 * MS)
    assert keys(again.late.to_trades()) == keys([too_late]) and again.accepted is None


# -- hopping windows ---------------------------------------------------------------------------


@pytest.mark.parametrize("window", ["4s/1s", "1m/5s", "6s/2s"])
def test_hopping_windows_equal_the_aggregation_over_their_trades(window: str) -> None:
    w = parse_window(window)
    rng = random.Random(window)
    e = engine(window, "1s", lateness=300 * MS, horizon=w.size, idle=1 * S)
    trades = []
    span = 3 * w.size
    for k in range(120):
        ts = k * span // 120 + rng.randrange(0, 300 * MS)
        trades.append(trade(ts, round(rng.uniform(90, 110), 2), size=rng.randrange(1, 9) / 7,
                            instrument=rng.choice([BTC, ETH])))  # fmt: skip
    emitted = []
    for k in range(0, len(trades), 7):
        chunk = trades[k : k + 7]
        rng.shuffle(chunk)
        emitted += feed(e, chunk, max(t.ts for t in chunk) - T0).candles
    emitted += e.tick(T0 + span + 10 * w.size).candles
    emitted += e.flush(T0 + span + 10 * w.size)
    got = latest(emitted)
    expected = batch_candles(trades, [(w.name, w.size, w.slide), ("1s", S, S)])
    assert_candles_equal(got, expected)
    assert all(c.final for c in got.values())
    starts = {k[3] for k in got if k[2] == w.name}
    assert all(s % w.slide == 0 for s in starts)
    # Every trade is in size/slide hopping windows.
    some = trades[40]
    containing = [k for k in got if k[2] == w.name and k[:2] == (some.exchange, some.symbol)
                  and k[3] <= some.ts < k[3] + w.size]  # fmt: skip
    assert len(containing) == w.size // w.slide


# -- rolling statistics ------------------------------------------------------------------------


def direct_rolling(trades: list[Trade], end: int) -> tuple[float, float, float, float]:
    """30-minute average of 1-minute closes and 5-minute min/max/avg price, as of `end`."""
    minutes: dict[int, list[Trade]] = {}
    for t in trades:
        start = t.ts - t.ts % M
        if end - 30 * M <= start < end:
            minutes.setdefault(start, []).append(t)
    closes = [candle_of(group)["close"] for group in minutes.values()]
    recent = [t.price for t in trades if end - 5 * M <= t.ts < end]
    return (sum(closes) / len(closes), min(recent), max(recent), sum(recent) / len(recent))


class Rolling:
    """Feeds trades one batch at a time and keeps each statistic with the trades known then."""

    def __init__(self, e: CandleEngine) -> None:
        self.engine = e
        self.delivered: list[Trade] = []
        self.stats: list[tuple[RollingStat, list[Trade]]] = []

    def feed(self, trades: list[Trade], now: int) -> list[RollingStat]:
        self.delivered += trades
        out = feed(self.engine, trades, now)
        self.stats += [(stat, list(self.delivered)) for stat in out.rolling]
        return out.rolling

    def check(self) -> None:
        assert self.stats
        for stat, known in self.stats:
            got = (stat.avg_close_30m, stat.min_price_5m, stat.max_price_5m, stat.avg_price_5m)
            assert got == pytest.approx(direct_rolling(known, stat.ts), rel=1e-12), (
                f"stat at the end of minute {(stat.ts - T0) // M - 1}"
            )


def test_rolling_stats_equal_a_direct_computation() -> None:
    rng = random.Random(7)
    lateness = 2 * S
    trades = []
    for minute in range(45):
        if rng.random() < 0.15:
            continue  # a minute without trades
        for _ in range(rng.randrange(1, 6)):
            ts = minute * M + rng.randrange(0, M)
            trades.append(trade(ts, round(rng.uniform(95, 105), 2)))
    # Delivered out of order, each at most `lateness` after its event time.
    arrivals = sorted(trades, key=lambda t: t.ts + rng.randrange(0, lateness))
    rolling = Rolling(engine("1m", "5s", lateness=lateness))
    now = 0
    for t in arrivals:
        now = max(now, t.ts - T0)
        rolling.feed([t], now + lateness)
    rolling.feed([trade(50 * M, 100.0)], 50 * M)
    rolling.check()
    stats = [stat for stat, _ in rolling.stats]
    minutes_with_trades = {t.ts - t.ts % M for t in trades}
    assert sorted(s.ts - M for s in stats) == sorted(minutes_with_trades)
    assert {(s.exchange, s.symbol) for s in stats} == {("ex", "BTC-USDT")}


def test_rolling_stats_of_a_minute_that_closes_late_use_no_later_minute() -> None:
    """A late trade (within the horizon) into an empty minute closes that minute after the
    next one: its statistics are still as of its own end, and it leaves the 30 minutes in
    time."""
    rolling = Rolling(engine("1m", lateness=2 * S, horizon=5 * M))
    for m in range(4):  # minutes 0-3; minute 4 has no trade yet
        rolling.feed([trade(m * M + 30 * S, 100.0 + m)], m * M + 30 * S)
    rolling.feed([trade(5 * M + 30 * S, 200.0)], 5 * M + 30 * S)
    closed = rolling.feed([trade(6 * M + 3 * S, 101.0)], 6 * M + 3 * S)
    assert [(s.ts - T0) // M for s in closed] == [6]  # minute 5 closed
    closed = rolling.feed([trade(4 * M + 59 * S, 50.0)], 6 * M + 4 * S)
    assert [(s.ts - T0) // M for s in closed] == [5]  # minute 4 closed late
    for m in range(7, 40):
        rolling.feed([trade(m * M + 1 * S, 100.0 + m % 3)], m * M + 1 * S)
    rolling.check()


# -- restore after a crash -----------------------------------------------------------------


@pytest.mark.parametrize(("seed", "crash_at"), [(11, 35), (12, 20), (13, 50), (14, 8)])
def test_restore_rebuilds_the_same_candles_and_recognises_seen_trades(
    tmp_path: Path, seed: int, crash_at: int
) -> None:
    rng = random.Random(seed)
    lateness, horizon = 500 * MS, 3 * S
    windows = ("1s", "3s", "4s/1s")

    def new_engine() -> CandleEngine:
        return engine(*windows, lateness=lateness, horizon=horizon, idle=1 * S, every=200 * MS)

    batches: list[tuple[int, list[Trade]]] = []
    sent: list[Trade] = []
    now = 0
    for _ in range(60):
        now += rng.randrange(50, 400) * MS
        batch = [
            trade(now - rng.randrange(0, lateness + horizon), round(rng.uniform(99, 101), 2),
                  instrument=rng.choice([BTC, ETH]), side=rng.choice(["buy", "sell"]))
            for _ in range(rng.randrange(0, 6))
        ]  # fmt: skip
        resendable = [t for t in sent if t.ts >= T0 + now - lateness - horizon]
        batch += rng.sample(resendable, k=min(2, len(resendable)))
        sent += batch
        rng.shuffle(batch)
        batches.append((now, batch))

    def play(e: CandleEngine, part, store: DuckDBStore | None = None) -> tuple[list, int]:
        emitted, duplicates = [], 0
        for at, batch in part:
            for out in (feed(e, batch, at), e.tick(T0 + at)):
                emitted += out.candles
                duplicates += out.duplicates
                if store is not None:
                    accepted = [out.accepted] if out.accepted is not None else []
                    store.write(trades=accepted, candles=out.candles)
        return emitted, duplicates

    uninterrupted = new_engine()
    whole, _ = play(uninterrupted, batches)
    whole += uninterrupted.flush(T0 + now)
    expected = latest(whole)

    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    play(new_engine(), batches[:crash_at], store)  # then the process dies: no flush
    revision_query = "SELECT exchange, symbol, interval, start, revision FROM candles"
    before_crash = {tuple(r[:4]): r[4] for r in store.query(revision_query)}
    assert any(before_crash.values()), "the scenario should have corrected some candle"

    restarted = new_engine()
    align = max(w.size for w in restarted.windows)
    cutoff = store.restore_cutoff(restarted.horizon, lateness, align)
    stored = concat_batches(store.restore_batches(cutoff), "restore")
    assert set(cutoff) == {(BTC.exchange, BTC.symbol), (ETH.exchange, ETH.symbol)}
    since = min(cutoff.values())
    revisions, finals = store.revisions(since), store.finals(since)
    now = T0 + batches[crash_at][0]
    store.write(candles=restarted.restore(stored, cutoff, revisions, now, finals))
    after_restore = {tuple(r[:4]): r[4] for r in store.query(revision_query)}
    assert all(after_restore[k] >= r for k, r in before_crash.items()), "a revision went back"

    _, duplicates = play(restarted, batches[crash_at:], store)
    store.write(candles=restarted.flush(T0 + now))
    known = {(t.exchange, t.symbol, t.trade_id) for _, b in batches[:crash_at] for t in b}
    later = [(t.exchange, t.symbol, t.trade_id) for _, b in batches[crash_at:] for t in b]
    assert set(later) & known, "the scenario should resend trades from before the crash"
    assert duplicates == len(later) - len(set(later) - known)

    rows = store.query("SELECT count(*) FROM candles")[0][0]
    stored_candles = {
        (c.exchange, c.symbol, c.interval, c.start): c
        for i in windows
        for inst in (BTC, ETH)
        for c in store.candles(inst.exchange, inst.symbol, parse_window(i).name)
    }
    assert len(stored_candles) == rows
    assert_candles_equal(stored_candles, batch_candles(dedupe(sent), [
        (w.name, w.size, w.slide) for w in map(parse_window, windows)]))  # fmt: skip
    assert sorted(stored_candles) == sorted(expected)
    report = verify(store)
    assert report.ok, report.mismatches[:3]
    assert report.trades == len({(t.exchange, t.symbol, t.trade_id) for t in sent})
    store.close()


# -- long streams: state stays bounded and exact --------------------------------------------


def test_a_long_stream_keeps_memory_bounded_and_candles_exact() -> None:
    rng = random.Random(5)
    lateness, horizon = 200 * MS, 2 * S
    e = engine("1s", "4s/1s", lateness=lateness, horizon=horizon, idle=1 * S, every=100 * MS)
    sent: list[Trade] = []
    emitted: list[Candle] = []
    live = []
    for k in range(1500):  # 1500 batches, 0.5 s apart: 750 s of trading on two symbols
        now = k * 500 * MS
        batch = [
            trade(now - rng.choice([0, 0, 0, 100 * MS, 1500 * MS]), round(rng.uniform(1, 2), 3),
                  instrument=rng.choice([BTC, ETH]))
            for _ in range(rng.randrange(1, 5))
        ]  # fmt: skip
        recent = [t for t in sent[-8:] if t.ts >= T0 + now - lateness - horizon]
        if recent and rng.random() < 0.3:
            batch.append(rng.choice(recent))  # a resend, still within the horizon
        sent += batch
        out = feed(e, batch, now)
        assert out.late is None
        emitted += out.candles
        emitted += e.tick(T0 + now + 100 * MS).candles
        live.append(sum(len(t) for t in e.tables))
    emitted += e.flush(T0 + 750 * S)
    expected = batch_candles(dedupe(sent), [("1s", S, S), ("4s/1s", 4 * S, S)])
    assert len(expected) > 2500
    assert_candles_equal(latest(emitted), expected)
    # Windows are forgotten once behind the horizon: a few dozen live, not thousands.
    assert max(live) < 60, max(live)
    assert 0 < e.remembered_trades() < 100  # trade ids are forgotten too


def test_restore_never_turns_a_final_candle_back_into_a_provisional_one(tmp_path: Path) -> None:
    """The idle timer closed the window before the crash; the rewritten row stays final."""
    store = DuckDBStore(tmp_path / "tickpipe.duckdb")
    before = engine("1s", lateness=500 * MS, idle=1 * S)
    out = feed(before, [trade(200 * MS, 1.0), trade(700 * MS, 2.0)], 700 * MS)
    store.write(trades=[out.accepted], candles=out.candles)
    store.write(candles=before.tick(T0 + 3 * S).candles)  # quiet: the window closes
    assert store.query("SELECT final FROM candles") == [(True,)]

    after = engine("1s", lateness=500 * MS, idle=1 * S)
    cutoff = store.restore_cutoff(after.horizon, 500 * MS, S)
    stored = concat_batches(store.restore_batches(cutoff), "restore")
    since = min(cutoff.values())
    rewritten = after.restore(
        stored, cutoff, store.revisions(since), T0 + 4 * S, store.finals(since)
    )
    store.write(candles=rewritten)
    assert store.query("SELECT final, trades FROM candles") == [(True, 2)]
    store.close()
