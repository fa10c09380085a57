"""The composite (consolidated) price: robust to one bad venue, quotes kept apart unless
configured equivalent, final and revised like any candle, bounded in memory; and its live view
(deviation, staleness)."""

from __future__ import annotations

import random
import statistics
from collections import defaultdict

import pytest

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.composite import CompositeCandles, band_mean, consolidate
from tickpipe.engine.composite_settings import COMPOSITE, CompositeConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, Instrument, Trade, TradeBatch

from .reference import candle_of

S = 1_000_000
T0 = 1_700_000_040 * S
USD = CompositeConfig(band_pct=1.0, equivalent_quotes=(("USD", "USDT"),))
BINANCE = Instrument("binance", "BTC-USDT")
COINBASE = Instrument("coinbase", "BTC-USD")
KRAKEN = Instrument("kraken", "BTC-USD")


def engine(lateness: int = 0) -> CandleEngine:
    config = EngineConfig(
        windows=(parse_window("1s"),), allowed_lateness=lateness, correction_horizon=60 * S,
        idle_timeout=3600 * S, provisional_every=0,
    )  # fmt: skip
    return CandleEngine(config)


_seq = iter(range(1, 10**9))


def trade(instrument: Instrument, ts: int, price: float) -> Trade:
    seq = next(_seq)
    return Trade(
        source=instrument.exchange, exchange=instrument.exchange, symbol=instrument.symbol,
        trade_id=str(seq), seq=seq, price=price, size=0.5 + (seq % 3), side="buy",
        ts=ts, recv_ts=ts,
    )  # fmt: skip


def run(
    trades_by_step: list[list[Trade]], config: CompositeConfig = USD, lateness: int = 0
) -> tuple[dict[tuple[str, int], Candle], list[Candle]]:
    """Each step's trades through a real engine and the composite; the latest composite
    candle per (symbol, start) and every composite update in order."""
    e, composite = engine(lateness), CompositeCandles(config, 60 * S)
    updates: list[Candle] = []
    for step in trades_by_step:
        now = max(t.ts for t in step)
        updates += composite.update(e.process(TradeBatch.from_trades(step), now).candles)
    updates += composite.update(e.flush(T0 + 3600 * S))
    return {(c.symbol, c.start): c for c in updates}, updates


def expected_composite(trades: list[Trade], band_pct: float) -> dict[int, dict]:
    """Per 1 s window: each venue's candle from its trades, then the band around the median
    of their closes picks the venues whose open/high/low/close are averaged."""
    by_window: dict[int, dict[str, list[Trade]]] = defaultdict(lambda: defaultdict(list))
    for t in trades:
        by_window[t.ts - t.ts % S][t.exchange].append(t)
    out = {}
    for start, venues in by_window.items():
        candles = [candle_of(ts) for _, ts in sorted(venues.items())]
        median = statistics.median(c["close"] for c in candles)
        used = [c for c in candles if abs(c["close"] - median) <= median * band_pct / 100]
        if not used:  # none within the band: the venues nearest the median (their mean is it)
            nearest = min(abs(c["close"] - median) for c in candles)
            used = [c for c in candles if abs(c["close"] - median) <= nearest * (1 + 1e-9)]
        out[start] = {
            "open": statistics.fmean(c["open"] for c in used),
            "high": statistics.fmean(c["high"] for c in used),
            "low": statistics.fmean(c["low"] for c in used),
            "close": statistics.fmean(c["close"] for c in used),
            "volume": sum(c["volume"] for c in used),
            "trades": sum(c["trades"] for c in used),
            "venues": len(used),
        }
    return out


def test_band_mean_leaves_out_the_venue_far_from_the_median() -> None:
    assert band_mean([100.0, 101.0, 150.0], 1.0) == (100.5, [True, True, False])
    # two venues 4% apart: neither is within 1% of their median, which is the answer
    assert band_mean([100.0, 104.0], 1.0) == (102.0, [True, True])
    # ... however the floats round: both are equally near
    assert band_mean([59905.23, 77871.47], 1.0)[1] == [True, True]


def test_a_venue_that_joins_later_finds_the_first_venues_windows() -> None:
    # Binance's window [0, 1 s) closes before Coinbase's first candle of it arrives: the
    # composite of that window still has both.
    steps = [
        [trade(BINANCE, T0 + 100_000, 100.0), trade(BINANCE, T0 + 1_200_000, 100.0)],
        [trade(COINBASE, T0 + 200_000, 101.0), trade(COINBASE, T0 + 1_300_000, 101.0)],
    ]
    latest, _ = run(steps)
    first = latest[("BTC-USD", T0)]
    assert (first.close, first.final, first.trades) == (100.5, True, 2)


def test_the_composite_ignores_an_outlier_venue_and_follows_the_rest() -> None:
    rng = random.Random(7)
    price, steps, everything = 100.0, [], []
    for second in range(30):
        step = []
        for k in range(6):
            price *= 1 + rng.uniform(-0.001, 0.001)
            ts = T0 + second * S + k * 150_000
            step.append(trade(BINANCE, ts, round(price * (1 + rng.uniform(-2e-4, 2e-4)), 2)))
            step.append(trade(COINBASE, ts + 1, round(price * (1 + rng.uniform(-2e-4, 2e-4)), 2)))
            step.append(trade(KRAKEN, ts + 2, round(price * 1.3, 2)))  # 30% off: a bad venue
        steps.append(step)
        everything += step
    latest, _ = run(steps)
    want = expected_composite(everything, USD.band_pct)
    assert sorted(start for _, start in latest) == sorted(want)
    for (symbol, start), got in latest.items():
        exp = want[start]
        assert symbol == "BTC-USD" and got.exchange == COMPOSITE
        assert got.final == (start != max(want))  # the last window is still open
        assert exp["venues"] == 2  # Kraken left out of every window
        for name in ("open", "high", "low", "close", "volume"):
            assert getattr(got, name) == pytest.approx(exp[name], rel=1e-12), name
        assert got.trades == exp["trades"]
    # it follows the other two: every close lies between theirs, far from Kraken's
    closes = [latest[("BTC-USD", s)].close for s in sorted(want)]
    assert max(closes) < 1.01 * max(t.price for t in everything if t.exchange == "binance")


def test_quote_currencies_are_kept_apart_unless_equivalent() -> None:
    eur = Instrument("kraken", "BTC-EUR")
    steps = [[trade(BINANCE, T0, 100.0), trade(COINBASE, T0 + 1, 101.0), trade(eur, T0 + 2, 90.0)]]
    latest, _ = run([*steps, [trade(BINANCE, T0 + 2 * S, 100.0)]])
    assert latest[("BTC-USD", T0)].close == 100.5  # EUR not in it
    assert {symbol for symbol, _ in latest} == {"BTC-USD"}  # one venue of EUR: no composite
    apart, _ = run(
        [[trade(BINANCE, T0 + 5 * S, 100.0), trade(COINBASE, T0 + 5 * S + 1, 101.0)]],
        CompositeConfig(),
    )
    assert apart == {}  # USDT and USD not equivalent: each has a single venue


def test_a_composite_is_final_once_every_venue_is_and_a_correction_raises_its_revision() -> None:
    first = [trade(BINANCE, T0 + 100_000, 100.0), trade(COINBASE, T0 + 200_000, 101.0)]
    close_window = [trade(BINANCE, T0 + 1_500_000, 100.0), trade(COINBASE, T0 + 1_500_000, 101.0)]
    late = [trade(COINBASE, T0 + 300_000, 100.6)]  # into the closed window: a correction
    _, updates = run([first, close_window, late])
    window = [c for c in updates if c.start == T0]
    assert [(c.final, c.revision) for c in window] == [(False, 0), (True, 0), (True, 1)]
    assert window[-1].close == pytest.approx((100.0 + 100.6) / 2)


def test_the_composite_keeps_only_the_correction_horizon_of_windows() -> None:
    composite = CompositeCandles(USD, horizon_us=10 * S)
    e = engine()
    for second in range(200):
        ts = T0 + second * S
        batch = TradeBatch.from_trades([trade(BINANCE, ts, 100.0), trade(COINBASE, ts, 100.1)])
        composite.update(e.process(batch, ts).candles)
    assert len(composite) <= 12


def test_the_live_view_leaves_stale_venues_out_and_says_how_far_each_deviates() -> None:
    now = T0 + 100 * S
    latest = [
        ("binance", "BTC-USDT", 100.0, now - 1 * S),
        ("coinbase", "BTC-USD", 102.0, now - 2 * S),
        ("kraken", "BTC-USD", 500.0, now - 90 * S),  # stale: silent longer than 60 s
        ("kraken", "ETH-USD", 10.0, now),  # a single venue: no composite
    ]
    (btc,) = consolidate(latest, now, CompositeConfig(band_pct=2.0, equivalent_quotes=(
        ("USD", "USDT"),)))  # fmt: skip
    assert btc.symbol == "BTC-USD" and btc.price == 101.0
    rows = {v.exchange: v for v in btc.venues}
    assert rows["kraken"].stale and not rows["kraken"].included
    assert rows["kraken"].stale_s == 90.0
    assert rows["kraken"].deviation_pct == pytest.approx((500 - 101) / 101 * 100)
    assert rows["binance"].deviation_pct == pytest.approx(-100 / 101)
    assert rows["binance"].included and rows["coinbase"].included


def test_a_bad_venue_trading_first_in_a_window_never_makes_its_composite_alone() -> None:
    first = [trade(BINANCE, T0 + 100_000, 100.0), trade(COINBASE, T0 + 100_001, 100.2),
             trade(KRAKEN, T0 + 100_002, 130.0)]  # fmt: skip
    kraken_first = [trade(KRAKEN, T0 + 1_100_000, 131.0)]  # alone in [1 s, 2 s) so far
    then_binance = [trade(BINANCE, T0 + 1_200_000, 100.1)]
    _, updates = run([first, kraken_first, then_binance])
    second = [c.close for c in updates if c.start == T0 + S]
    assert second and all(close == 100.1 for close in second)


def test_final_composites_do_not_depend_on_the_order_venues_arrive_in() -> None:
    rng = random.Random(3)
    seconds: list[dict[Instrument, list[Trade]]] = []
    for second in range(12):
        by_venue = {}
        for venue, base in ((BINANCE, 100.0), (COINBASE, 100.3), (KRAKEN, 125.0)):
            if venue is COINBASE and second % 4 == 1:
                continue  # Coinbase quiet now and then
            by_venue[venue] = [
                trade(venue, T0 + second * S + k * 200_000 + n, round(base * (1 + rng.uniform(
                    -0.002, 0.002)), 2))
                for n, k in enumerate(range(4))
            ]  # fmt: skip
        seconds.append(by_venue)

    def finals(order: list[Instrument]) -> dict[int, tuple]:
        steps = [s[v] for s in seconds for v in order if v in s]
        _, updates = run(steps)
        return {c.start: (c.open, c.high, c.low, c.close, c.volume, c.trades)
                for c in updates if c.final}  # fmt: skip

    forward = finals([BINANCE, COINBASE, KRAKEN])
    assert len(forward) >= 10
    want = expected_composite([t for s in seconds for ts in s.values() for t in ts], 1.0)
    for start, (_, high, _, close, volume, trades) in forward.items():
        exp = want[start]
        assert (close, high, volume) == pytest.approx((exp["close"], exp["high"], exp["volume"]))
        assert trades == exp["trades"]
    quiet = forward[T0 + 5 * S]  # Binance and Kraken only: too far apart, their median
    assert quiet[3] == pytest.approx(want[T0 + 5 * S]["close"]) and want[T0 + 5 * S]["venues"] == 2
    assert finals([KRAKEN, COINBASE, BINANCE]) == forward == finals([COINBASE, KRAKEN, BINANCE])


def test_a_venue_turning_up_after_the_composite_is_final_corrects_it_without_reopening() -> None:
    both = [trade(BINANCE, T0 + 100_000, 100.0), trade(COINBASE, T0 + 100_001, 100.4)]
    close_it = [trade(BINANCE, T0 + 1_500_000, 100.0), trade(COINBASE, T0 + 1_500_001, 100.4)]
    kraken_late = [trade(KRAKEN, T0 + 200_000, 100.2)]  # a new venue, its window still open
    _, updates = run([both, close_it, kraken_late])
    window = [(c.final, c.revision, c.close) for c in updates if c.start == T0]
    assert window[-2:] == [(True, 0, pytest.approx(100.2)), (True, 1, pytest.approx(100.2))]
    assert all(final for final, _, _ in window[window.index(window[-2]) :])
