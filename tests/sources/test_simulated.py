"""The simulated market: deterministic, market-like, paced to the wall clock, restart-safe ids."""

from __future__ import annotations

import asyncio
import itertools
import time

import numpy as np
import pytest

from tickpipe.records import SIDE_BUY, SIDE_SELL, TradeBatch, concat_batches
from tickpipe.sources import SourceContext
from tickpipe.sources.simulated import MarketSimulator, SimulatedMarket

T0 = 1_700_000_000_000_000  # 2023-11-14, µs
SECOND = 1_000_000


def spans(market: SimulatedMarket | MarketSimulator, seconds: float, step: float) -> TradeBatch:
    """All trades of `seconds` of simulated time, generated in spans of `step` seconds."""
    edges = np.arange(0, seconds * SECOND + 1, step * SECOND).astype(np.int64) + T0
    return concat_batches(market.span(int(a), int(b)) for a, b in itertools.pairwise(edges))


def per_symbol(batch: TradeBatch) -> dict[str, np.ndarray]:
    """Row indexes of each symbol, in batch order."""
    return {
        inst.symbol: np.flatnonzero(batch.instrument == code)
        for code, inst in enumerate(batch.instruments)
    }


async def run_for(market: SimulatedMarket, seconds: float, emit_delay: float = 0.0):
    """Run the source for `seconds` of wall time; the batches and the wall-clock window (µs)."""
    batches: list[TradeBatch] = []

    async def emit(batch: TradeBatch) -> None:
        batches.append(batch)
        if emit_delay and len(batches) == 1:
            await asyncio.sleep(emit_delay)

    ctx = SourceContext(emit=emit)
    start = time.time_ns() // 1000
    task = asyncio.create_task(market.run(ctx))
    await asyncio.sleep(seconds)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return batches, start, time.time_ns() // 1000, ctx


def test_same_seed_gives_same_trades() -> None:
    a = spans(SimulatedMarket(symbols=30, seed=7, start_seq=0), 5, 0.05).to_trades()
    b = spans(SimulatedMarket(symbols=30, seed=7, start_seq=0), 5, 0.05).to_trades()
    other = spans(SimulatedMarket(symbols=30, seed=8, start_seq=0), 5, 0.05).to_trades()
    assert len(a) > 5_000
    assert a == b
    assert [t.price for t in a[:100]] != [t.price for t in other[:100]]


def test_generate_gives_exactly_n_trades_in_time_order_without_sleeping() -> None:
    market = SimulatedMarket(symbols=50, rate=1_000_000, seed=1, start_seq=0)
    started = time.monotonic()
    batch = market.generate(200_000, T0)
    assert time.monotonic() - started < 5  # no pacing: generated, not waited for
    assert len(batch) == 200_000
    assert np.all(np.diff(batch.ts) >= 0)
    assert batch.ts[0] >= T0 and batch.ts[-1] < T0 + SECOND // 5  # 200k trades at 1M/s
    assert len(np.unique(batch.instrument)) > 30  # the quiet ones may not trade in 0.2 s
    again = SimulatedMarket(symbols=50, rate=1_000_000, seed=1, start_seq=0).generate(200_000, T0)
    assert np.array_equal(batch.price, again.price)
    assert np.array_equal(batch.seq, again.seq)


def test_symbols_are_real_looking_then_synthetic_or_as_given() -> None:
    names = MarketSimulator(symbols=40).symbols
    assert names[:3] == ["BTC-USDT", "ETH-USDT", "SOL-USDT"]
    assert "SYM35-USDT" in names
    assert len(set(names)) == 40
    assert MarketSimulator(symbols=["btc/usdt", "ETHUSDC"]).symbols == ["BTC-USDT", "ETH-USDC"]


def test_trade_ids_increase_per_symbol_and_differ_after_restart() -> None:
    first = SimulatedMarket(symbols=10, rate=20_000, seed=3)
    before = concat_batches([spans(first, 1, 0.05), spans(first, 1, 0.05)])
    for rows in per_symbol(before).values():
        assert np.all(np.diff(before.seq[rows]) > 0)
    assert before.trade_id is None  # ids are str(seq)
    time.sleep(0.002)
    restarted = spans(SimulatedMarket(symbols=10, rate=20_000, seed=3), 1, 0.05)
    old = {(t.symbol, t.trade_id) for t in before.to_trades()}
    new = {(t.symbol, t.trade_id) for t in restarted.to_trades()}
    assert len(old) == len(before) and len(new) == len(restarted)
    assert not old & new
    assert restarted.seq.max() < 2**62  # int64 with headroom


def test_activity_is_skewed_and_quiet_symbols_go_seconds_without_trades() -> None:
    batch = spans(SimulatedMarket(symbols=20, rate=2000, seed=0, start_seq=0), 60, 0.05)
    rows = per_symbol(batch)
    counts = sorted((len(r) for r in rows.values()), reverse=True)
    assert counts[0] > 0.2 * len(batch)  # a few busy symbols ...
    assert sum(counts[:3]) > 0.5 * len(batch)
    seconds_between = {
        symbol: np.diff(np.concatenate([[T0], batch.ts[r], [T0 + 60 * SECOND]])) / SECOND
        for symbol, r in rows.items()
    }
    quiet = [s for s, gaps in seconds_between.items() if gaps.max() >= 2.0]
    assert len(quiet) >= 3  # ... and quiet ones that go seconds without a trade
    assert seconds_between["BTC-USDT"].max() < 0.5


def test_rate_switches_between_calm_and_burst_regimes_yet_averages_the_rate() -> None:
    market = SimulatedMarket(symbols=5, rate=100, seed=2, start_seq=0)
    batch = spans(market, 3600, 5)
    assert 0.8 * 360_000 < len(batch) < 1.2 * 360_000
    per_second = np.bincount((batch.ts - T0) // SECOND, minlength=3600)
    busy, calm = np.percentile(per_second, 99), np.percentile(per_second, 5)
    assert busy > 3 * 100 and calm < 0.6 * 100


def test_prices_walk_on_ticks_with_positive_sizes_and_both_sides() -> None:
    batch = spans(SimulatedMarket(symbols=10, rate=2000, seed=4, start_seq=0), 300, 1)
    rows = per_symbol(batch)
    btc = batch.price[rows["BTC-USDT"]]
    doge = batch.price[rows["DOGE-USDT"]]
    assert np.array_equal(btc * 10, np.round(btc * 10))  # tick 0.1
    assert np.array_equal(np.round(doge * 1e6) / 1e6, doge)  # tick 0.000001
    assert len(np.unique(btc)) > 100  # the price moves ...
    for r in rows.values():
        prices = batch.price[r]
        assert np.all(prices > 0)
        # ... as a random walk: no jumps between neighbouring trades, a plausible drift
        assert np.abs(np.diff(np.log(prices))).max() < 0.01
        assert 0.7 < prices[-1] / prices[0] < 1.4
    assert np.all(batch.size > 0)
    assert set(np.unique(batch.side)) == {SIDE_BUY, SIDE_SELL}
    assert 0.3 < np.mean(batch.side == SIDE_BUY) < 0.7
    lag = batch.recv_ts - batch.ts
    assert lag.min() >= 0 and np.median(lag) < 10_000


def test_rate_is_roughly_respected_over_a_second() -> None:
    market = SimulatedMarket(symbols=20, rate=5000, seed=0, batch_interval=0.05)
    batches, start, end, ctx = asyncio.run(run_for(market, 1.0))
    trades = concat_batches(batches)
    assert 0.4 * 5000 < len(trades) < 2.5 * 5000  # a smoke check: bursts make it vary
    assert 10 <= len(batches) <= 25  # one batch per batch_interval
    assert ctx.stats.trades == len(trades) and ctx.stats.frames == len(batches)
    assert start <= trades.ts.min() and trades.ts.max() <= end  # event time is the wall clock
    for rows in per_symbol(trades).values():
        assert np.all(np.diff(trades.ts[rows]) >= 0)
        assert np.all(np.diff(trades.seq[rows]) > 0)


def test_backpressure_skips_time_instead_of_building_a_backlog() -> None:
    market = SimulatedMarket(symbols=5, rate=10_000, seed=0, batch_interval=0.05)
    batches, *_ = asyncio.run(run_for(market, 0.8, emit_delay=0.5))
    assert len(batches) >= 3
    after_wait = batches[1]
    # The 0.5 s that emit blocked are not generated afterwards: the next batch covers a few
    # batch intervals of event time, not the whole wait.
    assert after_wait.ts.max() - after_wait.ts.min() <= 0.25 * SECOND
    assert len(after_wait) < 0.3 * 10_000
    assert len(concat_batches(batches)) < 0.6 * 10_000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"symbols": 0}, "symbols"),
        ({"rate": 0}, "rate"),
        ({"batch_interval": 0}, "batch_interval"),
        ({"symbols": ["BTC"]}, "BTC"),
        ({"symbols": ["BTC-USDT", "btcusdt"]}, "symbols must not repeat"),
    ],
)
def test_bad_arguments_are_rejected_naming_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SimulatedMarket(**kwargs)
