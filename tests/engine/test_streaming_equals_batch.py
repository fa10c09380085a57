"""The core guarantee: for any stream of trades the final candles equal a batch recomputation.

Hypothesis generates streams over 2 exchanges x 2 symbols with out-of-order arrival,
duplicates (resent, possibly in another batch, for text ids with another seq), late trades
within the correction horizon, random batching and idle-timer ticks; the engine's last
emitted version of each candle must equal `reference.batch_candles` over the de-duplicated
trades. Time is simulated: a trade is delivered at most `MAX_LAG` after its event time, and
`MAX_LAG` <= allowed lateness + horizon keeps every such trade correctable.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, Instrument, Trade, TradeBatch
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.verify import verify

from .reference import assert_candles_equal, batch_candles, dedupe, latest

MS = 1_000
S = 1_000_000
WINDOWS = tuple(parse_window(w) for w in ("1s", "3s", "6s", "6s/2s"))
SPECS = [(w.name, w.size, w.slide) for w in WINDOWS]
LATENESS = 500 * MS
HORIZON = 6 * S
MAX_LAG = LATENESS + HORIZON
CONFIG = EngineConfig(
    windows=WINDOWS,
    allowed_lateness=LATENESS,
    correction_horizon=HORIZON,
    idle_timeout=1 * S,
    provisional_every=300 * MS,
)
INSTRUMENTS = [
    Instrument("ex1", "BTC-USDT", "BTCUSDT"),
    Instrument("ex1", "ETH-USDT", "ETHUSDT"),
    Instrument("ex2", "BTC-USDT", "BTC/USDT"),
    Instrument("ex2", "ETH-USDT", "ETH/USDT"),
]
TEXT_IDS = {2, 3}  # ex2 has text trade ids; its seq is arrival order
T0 = 1_700_000_040 * S  # 2023-11-14T22:14:00Z: aligned to every window used here
STEP = 125 * MS  # event times fall on a coarse grid, so equal timestamps happen


@dataclass
class Stream:
    """What to feed the engine: ('batch', now, trades) and ('tick', now) events."""

    events: list[tuple] = field(default_factory=list)
    too_late: set[tuple[str, str, str]] = field(default_factory=set)  # keys beyond the horizon
    end: int = T0
    quiet_end: bool = False  # ends with a long quiet spell: the idle timer closes everything


@st.composite
def streams(draw, beyond_horizon: bool = False, max_events: int = 24) -> Stream:
    stream = Stream()
    now = T0
    ids = itertools.count(1)
    arrivals = itertools.count(1)
    numeric = [itertools.count(10**9 * (g + 1)) for g in range(len(INSTRUMENTS))]
    delivered: list[Trade] = []  # originals delivered in earlier batches
    max_ts: dict[int, int] = {}  # per instrument: latest event time of earlier batches
    for _ in range(draw(st.integers(1, max_events))):
        now += draw(st.integers(0, 8)) * STEP
        if draw(st.integers(0, 4)) == 0:
            stream.events.append(("tick", now))
            continue
        fresh: list[tuple[int, Trade]] = []
        for _ in range(draw(st.integers(0, 8))):
            g = draw(st.integers(0, len(INSTRUMENTS) - 1))
            lag = draw(st.one_of(st.integers(0, 3), st.integers(0, MAX_LAG // STEP))) * STEP
            fresh.append((g, make_trade(draw, g, now - lag, numeric, ids)))
        if beyond_horizon:
            for _ in range(draw(st.integers(0, 2))):
                g = draw(st.sampled_from(sorted(max_ts) or [0]))
                if g not in max_ts:
                    continue
                ts = max_ts[g] - LATENESS - HORIZON - draw(st.integers(1, 3 * S))
                late = make_trade(draw, g, ts, numeric, ids)
                stream.too_late.add((late.exchange, late.symbol, late.trade_id))
                fresh.append((g, late))
        resendable = [t for t in delivered if t.ts >= now - MAX_LAG]
        resends = []
        if resendable:
            resends = draw(st.lists(st.sampled_from(resendable), max_size=3))
        resends += [t for _, t in fresh if draw(st.integers(0, 9)) == 0]  # twice in one batch
        batch = [t for _, t in fresh] + resends
        batch = draw(st.permutations(batch))
        copies = []
        for t in batch:
            copy = Trade(**{f: getattr(t, f) for f in t.__struct_fields__})
            if INSTRUMENTS.index(Instrument(t.exchange, t.symbol, t.raw_symbol)) in TEXT_IDS:
                copy.seq = next(arrivals)  # arrival order: a resent copy has another seq
            copy.recv_ts = now
            copies.append(copy)
        if copies:
            stream.events.append(("batch", now, copies))
        for g, t in fresh:
            delivered.append(t)
            key = (t.exchange, t.symbol, t.trade_id)
            if key not in stream.too_late:
                max_ts[g] = max(max_ts.get(g, t.ts), t.ts)
    if draw(st.booleans()):
        now += 20 * S
        stream.events.append(("tick", now))
        stream.quiet_end = True
    stream.end = now
    return stream


def make_trade(draw, g: int, ts: int, numeric, ids) -> Trade:
    inst = INSTRUMENTS[g]
    if g in TEXT_IDS:
        trade_id, seq = f"T{next(ids):x}-{inst.symbol[:3].lower()}", 0
    else:
        seq = next(numeric[g])
        trade_id = str(seq)
    return Trade(
        source=inst.exchange,
        exchange=inst.exchange,
        symbol=inst.symbol,
        raw_symbol=inst.raw_symbol,
        trade_id=trade_id,
        seq=seq,
        price=100 + draw(st.integers(-20, 20)) * 0.01,
        size=draw(st.integers(1, 500)) * 0.001,
        side=draw(st.sampled_from(["buy", "sell", "unknown"])),
        ts=ts,
        recv_ts=ts,
    )


@dataclass
class Run:
    emitted: list[Candle]
    accepted: list[Trade]
    late: list[Trade]
    duplicates: int
    engine: CandleEngine


def run(stream: Stream, store: DuckDBStore | None = None) -> Run:
    engine = CandleEngine(CONFIG)
    result = Run([], [], [], 0, engine)
    for event in stream.events:
        if event[0] == "tick":
            out = engine.tick(event[1])
        else:
            _, now, trades = event
            out = engine.process(TradeBatch.from_trades(trades, source="test"), now)
            result.duplicates += out.duplicates
        if out.accepted is not None:
            result.accepted += out.accepted.to_trades()
        if out.late is not None:
            result.late += out.late.to_trades()
        result.emitted += out.candles
        if store is not None:
            store.write(trades=[out.accepted] if out.accepted else [], candles=out.candles)
    final = engine.flush(stream.end)
    result.emitted += final
    if store is not None:
        store.write(candles=final)
    return result


def delivered(stream: Stream) -> list[Trade]:
    return [t for e in stream.events if e[0] == "batch" for t in e[2]]


def key(t: Trade) -> tuple[str, str, str]:
    return (t.exchange, t.symbol, t.trade_id)


def expected_candles(stream: Stream) -> dict:
    on_time = [t for t in delivered(stream) if key(t) not in stream.too_late]
    return batch_candles(dedupe(on_time), SPECS)


@settings(max_examples=120, deadline=None)
@given(streams())
def test_final_candles_equal_the_batch_recomputation(stream: Stream) -> None:
    result = run(stream)
    assert_candles_equal(latest(result.emitted), expected_candles(stream))


@settings(max_examples=80, deadline=None)
@given(streams())
def test_every_trade_is_accepted_exactly_once(stream: Stream) -> None:
    result = run(stream)
    trades = delivered(stream)
    distinct = {key(t) for t in trades}
    accepted = Counter(key(t) for t in result.accepted)
    assert set(accepted) == distinct
    assert max(accepted.values(), default=1) == 1
    assert len(result.accepted) == len(distinct)
    assert result.duplicates == len(trades) - len(distinct)
    assert result.late == []
    # The first copy is the one accepted (for text ids a resent copy has another seq).
    first = {key(t): t for t in reversed(trades)}
    assert {key(t): t.seq for t in result.accepted} == {k: t.seq for k, t in first.items()}


@settings(max_examples=80, deadline=None)
@given(streams())
def test_candles_behind_the_watermark_are_final_and_revisions_only_grow(stream: Stream) -> None:
    result = run(stream)
    engine = result.engine
    size = {w.name: w.size for w in WINDOWS}
    for (exchange, symbol, interval, start), candle in latest(result.emitted).items():
        inst = next(i for i in INSTRUMENTS if (i.exchange, i.symbol) == (exchange, symbol))
        watermark = engine.watermark(inst)
        if watermark is not None and start + size[interval] <= watermark:
            assert candle.final, (exchange, symbol, interval, start, watermark)
        if stream.quiet_end:
            assert candle.final, ("open after a long quiet spell", exchange, symbol, interval)
    history: dict[tuple, Candle] = {}
    for candle in result.emitted:
        k = (candle.exchange, candle.symbol, candle.interval, candle.start)
        before = history.get(k)
        if before is not None and before.final:
            # Once final, a candle is only re-issued as a correction: final, revision + 1.
            assert candle.final, k
            assert candle.revision == before.revision + 1, (k, before.revision, candle.revision)
        elif before is not None:
            assert candle.revision == before.revision == 0
        history[k] = candle


@settings(max_examples=80, deadline=None)
@given(streams(beyond_horizon=True))
def test_trades_beyond_the_horizon_come_back_late_and_are_left_out(stream: Stream) -> None:
    result = run(stream)
    assert {key(t) for t in result.late} == stream.too_late
    assert not stream.too_late & {key(t) for t in result.accepted}
    assert_candles_equal(latest(result.emitted), expected_candles(stream))


_store_runs = itertools.count()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(streams(beyond_horizon=True, max_events=16))
def test_the_stored_result_passes_verify(tmp_path: Path, stream: Stream) -> None:
    store = DuckDBStore(tmp_path / f"run{next(_store_runs)}.duckdb")
    try:
        result = run(stream, store)
        report = verify(store)
        assert report.ok, report.mismatches[:3]
        distinct = {key(t) for t in delivered(stream)} - stream.too_late
        assert report.trades == len(distinct)
        assert report.duplicate_trades == 0
        expected = latest(result.emitted)
        assert report.candles == len(expected)
        stored = store.query(
            "SELECT exchange, symbol, interval, start, trades, revision, final FROM candles"
        )
        assert {(e, s, i, st): (n, r, f) for e, s, i, st, n, r, f in stored} == {
            k: (c.trades, c.revision, c.final) for k, c in expected.items()
        }
    finally:
        store.close()
