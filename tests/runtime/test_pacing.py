"""The step pacer: a delivered batch is urgent exactly when a step on it would send an open
candle update of one of its instruments' newest windows (those holding its newest trade), as
the engine itself decides. (Updates of older windows, such as the rest of a window a batch
left, go with whichever step comes next.)"""

from __future__ import annotations

import numpy as np
import pytest

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, Instrument, TradeBatch
from tickpipe.runtime.pacing import StepPacer

MS = 1_000
S = 1_000_000
T0 = 1_700_000_040 * S  # aligned to every window used here
EVERY = 250 * MS
WINDOWS = tuple(parse_window(w) for w in ("1s", "1m"))
INSTRUMENTS = [Instrument("binance", s) for s in ("BTC-USDT", "ETH-USDT", "SOL-USDT")]


def batch(codes: list[int], ts: list[int], first_seq: int) -> TradeBatch:
    n = len(codes)
    return TradeBatch(
        source="binance", instruments=INSTRUMENTS, instrument=np.array(codes, np.int32),
        seq=np.arange(first_seq, first_seq + n, dtype=np.int64), price=np.full(n, 100.0),
        size=np.ones(n), side=np.zeros(n, np.int8), ts=np.array(ts, np.int64),
        recv_ts=np.array(ts, np.int64),
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_a_batch_is_urgent_exactly_when_its_step_sends_an_open_candle_of_its_newest_windows(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    windows = tuple(parse_window(w) for w in ("1s", "5s", "1m"))
    engine = CandleEngine(
        EngineConfig(windows=windows, allowed_lateness=2 * S, provisional_every=EVERY)
    )
    pacer = StepPacer(windows, EVERY)
    ts, now, seq, urgent_seen, calm_seen = T0, T0, 0, 0, 0
    size = {w.name: w.size for w in windows}
    newest: dict[str, int] = {}  # per symbol, its newest event time
    for _ in range(400):
        # In event-time order (a late trade corrects an older window: not what is paced here),
        # a few ms to a few hundred ms apart, on one to three instruments.
        n = int(rng.integers(1, 6))
        codes = rng.integers(0, int(rng.integers(1, 4)), n).tolist()
        times = (ts + np.cumsum(rng.integers(0, 60 * MS, n))).tolist()
        ts = times[-1]
        now = max(now + int(rng.integers(1 * MS, 120 * MS)), ts)
        b = batch(codes, times, seq)
        seq += n
        urgent = pacer.urgent(b, now)
        out = engine.process(b, now)
        for c, t in zip(codes, times, strict=True):
            newest[INSTRUMENTS[c].symbol] = max(newest.get(INSTRUMENTS[c].symbol, t), t)
        sends = any(
            not c.final and c.start <= newest.get(c.symbol, -1) < c.start + size[c.interval]
            for c in out.candles
            if c.symbol in {INSTRUMENTS[c].symbol for c in codes}
        )
        assert urgent == sends, (urgent, [(c.symbol, c.interval, c.final) for c in out.candles])
        pacer.stepped(out.candles)
        urgent_seen += urgent
        calm_seen += not urgent
    assert urgent_seen > 20 and calm_seen > 20  # both verdicts were put to the test


def candle(symbol: str, interval: str, updated_at: int, final: bool = False) -> Candle:
    return Candle(
        exchange="binance", symbol=symbol, interval=interval, start=T0, open=1.0, high=1.0,
        low=1.0, close=1.0, volume=1.0, quote_volume=1.0, vwap=1.0, mean_price=1.0, trades=1,
        buy_volume=0.0, sell_volume=0.0, first_seq=0, last_seq=0, final=final, revision=0,
        updated_at=updated_at,
    )  # fmt: skip


def test_an_instrument_is_due_when_the_first_of_its_intervals_is() -> None:
    pacer = StepPacer(WINDOWS, EVERY)
    assert pacer.urgent(batch([0], [T0], 0), T0)  # a new window
    pacer.stepped([candle("BTC-USDT", "1s", T0 + 100 * MS), candle("BTC-USDT", "1m", T0)])
    pacer.stepped([candle("BTC-USDT", "1s", T0 + 200 * MS, final=True)])  # finals: not sends
    later = batch([0], [T0 + 10 * MS], 1)
    later.instruments = INSTRUMENTS[:1]  # a source of one instrument
    assert not pacer.urgent(later, T0 + EVERY - 1)
    assert pacer.urgent(later, T0 + EVERY)  # the 1m candle's update is due


def test_a_lingering_step_holds_for_an_update_that_just_fell_due() -> None:
    pacer = StepPacer(WINDOWS, EVERY)
    assert pacer.urgent(batch([0, 1], [T0, T0], 0), T0)
    pacer.stepped([candle("BTC-USDT", "1s", T0), candle("ETH-USDT", "1s", T0 + 50 * MS)])
    grace = 10 * MS
    assert pacer.hold_us(T0 + EVERY - 1, grace) == 0  # nothing due yet
    assert pacer.hold_us(T0 + EVERY + 4 * MS, grace) == 6 * MS
    assert pacer.hold_us(T0 + EVERY + grace, grace) == 0  # waited long enough
    assert pacer.hold_us(T0 + 50 * MS + EVERY + 1 * MS, grace) == 9 * MS  # the latest one due
