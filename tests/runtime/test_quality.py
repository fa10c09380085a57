"""Data quality per venue as trades reach the engine: delay quantiles from a bounded sketch,
out-of-order trades, gaps, and the window the delays are taken over."""

from __future__ import annotations

import numpy as np
import pytest

from tickpipe.records import Gap, Instrument, Trade, TradeBatch
from tickpipe.runtime.quality import DELAY_BOUNDS_MS, DelaySketch, QualityMeter

S = 1_000_000
T0 = 1_700_000_040 * S


def bucket_bound(value: float) -> float:
    """The sketch's resolution: the upper bound of the bucket `value` falls in."""
    return float(DELAY_BOUNDS_MS[np.searchsorted(DELAY_BOUNDS_MS, value, side="left")])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_delay_quantiles_are_the_bucket_of_the_exact_quantile(seed: int) -> None:
    rng = np.random.default_rng(seed)
    delays = np.concatenate([rng.lognormal(2.0, 1.5, 5000), rng.uniform(-5, 0, 50)])
    sketch = DelaySketch()
    for part in np.array_split(delays, 7):
        sketch.add(part)
    assert sketch.count == len(delays)
    for q in (0.5, 0.9, 0.99):
        exact = float(np.quantile(delays, q, method="inverted_cdf"))
        assert sketch.quantile(q) == bucket_bound(exact)
        assert exact <= sketch.quantile(q) <= max(exact * 1.2, 0.1)  # at most 20% above
    assert len(sketch.counts) == len(DELAY_BOUNDS_MS) + 1  # bounded, whatever went in


def batch(rows: list[tuple[Instrument, int, int]], source: str = "feed") -> TradeBatch:
    """Trades (instrument, event µs after T0, delay µs) in arrival order."""
    return TradeBatch.from_trades(
        [
            Trade(source=source, exchange=i.exchange, symbol=i.symbol, trade_id=str(n), seq=n,
                  price=1.0, size=1.0, ts=T0 + ts, recv_ts=T0 + ts + delay)
            for n, (i, ts, delay) in enumerate(rows)
        ],
        source,
    )  # fmt: skip


def test_out_of_order_trades_match_a_direct_count_across_batches_and_venues() -> None:
    rng = np.random.default_rng(5)
    instruments = [
        Instrument("a", "BTC-USD"),
        Instrument("a", "ETH-USD"),
        Instrument("b", "BTC-USD"),
    ]
    meter = QualityMeter()
    newest: dict[Instrument, int] = {}
    expected = {"a": 0, "b": 0}
    received = {"a": 0, "b": 0}
    for _ in range(20):
        rows = [
            (instruments[int(rng.integers(3))], int(rng.integers(0, 10_000)), 1000)
            for _ in range(int(rng.integers(1, 40)))
        ]
        for instrument, ts, _ in rows:  # the reference: one trade at a time
            if ts < newest.get(instrument, -1):
                expected[instrument.exchange] += 1
            newest[instrument] = max(ts, newest.get(instrument, -1))
            received[instrument.exchange] += 1
        meter.observe(batch(rows), T0)
    quality = meter.read(T0)
    assert {v: q.out_of_order for v, q in quality.items()} == expected
    assert {v: q.received for v, q in quality.items()} == received
    assert quality["a"].out_of_order_share == expected["a"] / received["a"]


def test_equal_event_times_are_not_out_of_order() -> None:
    btc = Instrument("a", "BTC-USD")
    meter = QualityMeter()
    meter.observe(batch([(btc, 5, 0), (btc, 5, 0), (btc, 6, 0)]), T0)
    meter.observe(batch([(btc, 6, 0), (btc, 4, 0)]), T0)
    assert meter.read(T0)["a"].out_of_order == 1


def test_delays_are_those_of_the_last_one_to_two_minutes_per_venue() -> None:
    a, b = Instrument("a", "BTC-USD"), Instrument("b", "BTC-USD")
    meter = QualityMeter(recent_s=60)
    meter.observe(batch([(a, 0, 900_000)] * 10), T0)  # 900 ms, long ago
    later = T0 + 600 * S
    meter.observe(batch([(a, 600 * S, 2_000)] * 99 + [(b, 600 * S, 40_000)]), later)
    quality = meter.read(later)
    assert quality["a"].delay_p50_ms == bucket_bound(2.0)
    assert quality["a"].delay_p99_ms == bucket_bound(2.0)  # the old 900 ms are gone
    assert quality["b"].delay_p50_ms == bucket_bound(40.0)
    assert quality["a"].received == 109  # counts are since start-up
    assert meter.read(later + 180 * S)["a"].delay_p50_ms is None  # nothing recent


def test_gaps_count_per_venue_with_the_trades_they_missed() -> None:
    meter = QualityMeter()
    meter.on_gap(Gap(source="binance", exchange="binance", symbol="BTC-USDT", first_missing=11,
                     last_missing=20, ts=T0, recovered=10))  # fmt: skip
    meter.on_gap(Gap(source="binance", exchange="binance", symbol="ETH-USDT", first_missing=5,
                     last_missing=5, ts=T0))  # fmt: skip
    q = meter.read(T0)["binance"]
    assert (q.gaps, q.missing, q.recovered, q.received) == (2, 11, 10, 0)
