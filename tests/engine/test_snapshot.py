"""The engine snapshot: an engine restored from one goes on exactly as if it had never stopped.

The same generated streams as the streaming-equals-batch tests are cut at a random event: the
first engine takes the part before the cut, its snapshot goes into a new engine, and that one
takes the rest. The candles emitted over both must equal the batch recomputation of every
delivered trade, each accepted once across the cut; a damaged, foreign or older blob is refused.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tickpipe.engine.candles import CandleEngine, EngineConfig, EngineOutput
from tickpipe.engine.snapshot import SnapshotError, load_snapshot, take_snapshot
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, RollingStat, Trade, TradeBatch
from tickpipe.sources.simulated import MarketSimulator

from .reference import assert_candles_equal, latest
from .test_streaming_equals_batch import (
    CONFIG,
    T0,
    Stream,
    delivered,
    expected_candles,
    key,
    streams,
)


def feed(engine: CandleEngine, events: list[tuple], into: list[EngineOutput]) -> None:
    for event in events:
        if event[0] == "tick":
            into.append(engine.tick(event[1]))
        else:
            _, now, trades = event
            into.append(engine.process(TradeBatch.from_trades(trades, source="test"), now))


def restarted(engine: CandleEngine, now: int) -> tuple[CandleEngine, list[Candle]]:
    """A new engine from `engine`'s snapshot, and the candles it re-emits on restore."""
    other = CandleEngine(engine.config)
    load_snapshot(other, take_snapshot(engine), now)
    return other, other.restore((), {}, {}, now)


@settings(max_examples=120, deadline=None)
@given(streams(beyond_horizon=True), st.data())
def test_an_engine_restored_from_a_snapshot_goes_on_as_if_it_never_stopped(
    stream: Stream, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(stream.events)))
    before, after = stream.events[:cut], stream.events[cut:]
    outputs: list[EngineOutput] = []
    first = CandleEngine(CONFIG)
    feed(first, before, outputs)
    now = before[-1][1] if before else T0
    second, restored = restarted(first, now)
    outputs.append(EngineOutput(candles=restored))
    feed(second, after, outputs)
    emitted = [c for o in outputs for c in o.candles] + second.flush(stream.end)

    assert_candles_equal(latest(emitted), expected_candles(stream))
    accepted = Counter(key(t) for o in outputs if o.accepted for t in o.accepted.to_trades())
    assert set(accepted) == {key(t) for t in delivered(stream)} - stream.too_late
    assert max(accepted.values(), default=1) == 1  # a resend after the cut is a duplicate
    late = {key(t) for o in outputs if o.late for t in o.late.to_trades()}
    assert late == stream.too_late


def test_rolling_statistics_go_on_from_the_restored_minutes() -> None:
    # 40 minutes of trades: the 30-minute average after the cut needs minutes from before it.
    config = EngineConfig(windows=(parse_window("1m"),), correction_horizon=2 * 60_000_000)
    market = MarketSimulator(["BTC-USDT", "ETH-USDT"], 20.0, seed=7)
    spans = [market.span(T0 + m * 60_000_000, T0 + (m + 1) * 60_000_000) for m in range(40)]
    never_stopped = CandleEngine(config)
    ends = [T0 + (m + 1) * 60_000_000 for m in range(40)]
    for span, end in zip(spans[:25], ends, strict=False):
        never_stopped.process(span, end)
    resumed, _ = restarted(never_stopped, ends[24])
    expected: list[RollingStat] = []
    got: list[RollingStat] = []
    for span, end in zip(spans[25:], ends[25:], strict=True):
        expected += never_stopped.process(span, end).rolling
        got += resumed.process(span, end).rolling
    assert len(expected) >= 20
    assert got == expected


def snapshot_of_a_few_trades() -> tuple[CandleEngine, bytes]:
    engine = CandleEngine(CONFIG)
    trades = [Trade(source="t", exchange="ex", symbol="BTC-USDT", trade_id=str(i), seq=i,
                    price=100.0 + i, size=1.0, side="buy", ts=T0 + i * 100_000, recv_ts=T0)
              for i in range(1, 30)]  # fmt: skip
    engine.process(TradeBatch.from_trades(trades), T0 + 3_000_000)
    return engine, take_snapshot(engine)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda b: b[:-5] + bytes([b[-5] ^ 1]) + b[-4:], "checksum"),
        (lambda b: b[: len(b) // 2], "checksum"),
        (lambda b: b"garbage", "not an engine snapshot"),
    ],
)
def test_a_damaged_snapshot_is_refused_and_leaves_the_engine_untouched(damage, why) -> None:
    _, blob = snapshot_of_a_few_trades()
    engine = CandleEngine(CONFIG)
    with pytest.raises(SnapshotError, match=why):
        load_snapshot(engine, damage(blob), T0)
    assert engine.states == [] and engine.open_windows() == 0


def test_a_snapshot_of_other_windows_or_another_version_is_refused() -> None:
    source, blob = snapshot_of_a_few_trades()
    other = EngineConfig(windows=(parse_window("1m"),))
    with pytest.raises(SnapshotError, match="other intervals"):
        load_snapshot(CandleEngine(other), blob, T0)

    import tickpipe.engine.snapshot as snapshot

    old = snapshot.VERSION
    snapshot.VERSION = old + 1
    try:
        with pytest.raises(SnapshotError, match=f"format version {old}, this tickpipe reads"):
            load_snapshot(CandleEngine(CONFIG), blob, T0)
    finally:
        snapshot.VERSION = old
    assert source.open_windows() > 0
