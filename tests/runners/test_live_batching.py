"""The live path batches frames (a WebSocket hand-over per `coalesce_s`, an engine step per
`step_budget_s`), and batching must not change a single candle: frames arriving one at a time
produce exactly the candles of the same frames in one batch.

Two levels: a property test over Binance trade frames (Hypothesis: any order within the
correction horizon, duplicates, several symbols), each frame parsed and stepped on its own
against all frames parsed and stepped once; and the real embedded pipeline, its Binance source
connected to the fake exchange that writes one trade per frame, whose stored candles must be
those of one batch of the frames the exchange wrote.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import duckdb
from engine.reference import APPROX, EXACT
from fakes import async_test
from fakes.binance_server import FakeBinance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickpipe.config import Config
from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, TradeBatch
from tickpipe.runners.embedded import Pipeline
from tickpipe.sources.binance import make_source
from tickpipe.sources.binance.parse import InstrumentIndex, parse_frames
from tickpipe.sources.registry import ExchangeOptions

MS = 1_000
S = 1_000_000
WINDOWS = tuple(parse_window(w) for w in ("1s", "5s", "1m", "10s/5s"))
CONFIG = EngineConfig(windows=WINDOWS, allowed_lateness=2 * S, correction_horizon=60 * S)
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")
T0_MS = 1_700_000_040_000  # aligned to every window used here
RECEIVED = (T0_MS + 21_000) * MS  # local receipt: after every trade time drawn
# Everything a candle says about its trades, as the streaming-equals-batch tests compare it:
# sums to 1e-9 (added in another order), the rest exactly. Not compared: `revision` (counts
# corrections of a window that closed before a straggler came, which one batch never needs)
# and `updated_at` (when it was sent).
FIELDS = ("start", *EXACT, *APPROX)


def differences(got: dict, expected: dict) -> list[str]:
    wrong = [f for f in FIELDS if f not in APPROX and got[f] != expected[f]]
    wrong += [f for f in APPROX if not math.isclose(got[f], expected[f], rel_tol=1e-9)]
    return [f"{f}: got {got[f]!r}, expected {expected[f]!r}" for f in wrong]


def fields(candle: Candle) -> dict:
    return {f: getattr(candle, f) for f in FIELDS}


def frame(symbol: str, trade_id: int, ts_ms: int, price: float, qty: float, maker: bool) -> bytes:
    raw = symbol.replace("-", "")
    data = {"e": "trade", "E": ts_ms, "s": raw, "t": trade_id, "p": f"{price:.8f}",
            "q": f"{qty:.8f}", "T": ts_ms, "m": maker, "M": True}  # fmt: skip
    return json.dumps({"stream": f"{raw.lower()}@trade", "data": data}).encode()


@st.composite
def frame_streams(draw) -> list[bytes]:
    """Trades of 3 symbols over ~20 s, delivered out of order (within the horizon), some twice."""
    made = []
    next_id = dict.fromkeys(SYMBOLS, 1_000)
    for _ in range(draw(st.integers(1, 60))):
        symbol = draw(st.sampled_from(SYMBOLS))
        next_id[symbol] += 1
        made.append(frame(
            symbol, next_id[symbol], T0_MS + draw(st.integers(0, 20_000)),
            draw(st.floats(1, 1000, allow_nan=False)), draw(st.floats(0.001, 5)),
            draw(st.booleans()),
        ))  # fmt: skip
    order = draw(st.permutations(range(len(made))))
    frames = [made[i] for i in order]
    for _ in range(draw(st.integers(0, 5))):  # resends
        frames.insert(draw(st.integers(0, len(frames))), draw(st.sampled_from(made)))
    return frames


def final_candles(engine: CandleEngine, updates: list[Candle], now: int) -> dict:
    """The newest version of every candle, after everything closed (well after the input)."""
    updates = updates + engine.tick(now).candles + engine.flush(now)
    return {(c.symbol, c.interval, c.start): c for c in updates}


def one_at_a_time(frames: list[bytes]) -> dict:
    engine, index = CandleEngine(CONFIG), InstrumentIndex.for_symbols(SYMBOLS)
    updates: list[Candle] = []
    now = RECEIVED
    for raw in frames:
        now += 100 * MS
        updates += engine.process(parse_frames([raw], now, index).batch, now).candles
    return final_candles(engine, updates, now + 10 * 60 * S)


def in_one_batch(frames: list[bytes]) -> dict:
    engine, index = CandleEngine(CONFIG), InstrumentIndex.for_symbols(SYMBOLS)
    now = RECEIVED
    updates = engine.process(parse_frames(frames, now, index).batch, now).candles
    return final_candles(engine, updates, now + 10 * 60 * S)


def assert_same_candles(streamed: dict, batched: dict) -> None:
    assert streamed.keys() == batched.keys()
    for key, candle in batched.items():
        got = streamed[key]
        assert candle.final and got.final, key
        assert not differences(fields(got), fields(candle)), key


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame_streams())
def test_frames_one_at_a_time_make_exactly_the_candles_of_one_batch(frames: list[bytes]) -> None:
    assert_same_candles(one_at_a_time(frames), in_one_batch(frames))


def test_the_comparison_sees_a_changed_trade() -> None:
    frames = [frame("BTC-USDT", 1_001 + n, T0_MS + 300 * n, 100.0 + n, 1.0, True)
              for n in range(5)]  # fmt: skip
    changed = [*frames[:-1], frame("BTC-USDT", 1_005, T0_MS + 1_200, 99.0, 1.0, True)]
    try:
        assert_same_candles(one_at_a_time(changed), in_one_batch(frames))
    except AssertionError:
        return
    raise AssertionError("a different close price went unnoticed")


@async_test(timeout=60)
async def test_the_pipeline_fed_one_frame_at_a_time_stores_the_candles_of_one_batch(
    tmp_path: Path,
) -> None:
    config = Config(data_dir=str(tmp_path), intervals=["1s", "5s", "1m"])
    async with FakeBinance(["BTCUSDT", "ETHUSDT"]) as server:
        options = ExchangeOptions(url=server.url, rest_url=server.rest_url)
        pipeline = Pipeline(config, [make_source(["BTC-USDT", "ETH-USDT"], options)], "run")
        steps: list[float] = []  # loop time of each engine step with trades
        process = pipeline.stage.process

        def timed(batch: TradeBatch) -> None:
            steps.append(asyncio.get_running_loop().time())
            process(batch)

        pipeline.stage.process = timed  # type: ignore[method-assign]
        try:
            assert pipeline.restore()
            run = asyncio.create_task(pipeline.run())
            await server.wait_connections(1, timeout=20)
            await server.wait_for(lambda: all(c.streams for c in server.open_connections()))
            await asyncio.sleep(1.1)  # past the connection's first second: frames coalesce
            # A trickle: one trade per frame, a loop turn apart, so the source's reads and
            # the engine's steps batch them however the timing falls.
            for n in range(600):
                server.send(server.trade(("BTCUSDT", "ETHUSDT")[n % 2]))
                await asyncio.sleep(0.0005 if n % 7 else 0.004)
            sent = [json.dumps({"stream": f"{e['s'].lower()}@trade", "data": e}).encode()
                    for e in server.published]  # fmt: skip
            await server.wait_for(lambda: pipeline.counters.trades >= len(sent), timeout=20)
            pipeline.stop()
            await run
        finally:
            pipeline.close()
    assert pipeline.stage.counters.trades == 600
    # The live path (the source's hand-overs, the engine's steps) makes at most one step per
    # millisecond: n steps span at least n - 1 budgets (the first step's own time from its
    # start to `process`, a fraction of a millisecond, is allowed for).
    assert len(steps) < 600
    assert steps[-1] - steps[0] >= (len(steps) - 1) * pipeline.step_budget_s - 0.005
    engine = CandleEngine(config.engine_config())
    index = InstrumentIndex.for_symbols(["BTC-USDT", "ETH-USDT"])
    batch = parse_frames(sent, 0, index).batch
    now = int(batch.recv_ts.max()) if len(batch) else 0
    expected = {(c.symbol, c.interval, c.start): c
                for c in engine.process(batch, now).candles + engine.flush(now)}  # fmt: skip
    con = duckdb.connect(str(tmp_path / "tickpipe.duckdb"), read_only=True)
    try:
        rows = con.execute(
            f"SELECT symbol, interval, {', '.join(FIELDS)} FROM candles WHERE exchange = 'binance'"
        ).fetchall()
    finally:
        con.close()
    stored = {(r[0], r[1], r[2]): dict(zip(FIELDS, r[2:], strict=True)) for r in rows}
    assert stored.keys() == expected.keys()
    for key, candle in expected.items():
        assert not differences(stored[key], fields(candle)), key
