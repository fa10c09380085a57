"""`tickpipe run --record DIR` against the local Binance server (with duplicates, reordering,
malformed frames, a dropped connection and trades fetched again over REST), then
`tickpipe replay-raw DIR` into a fresh data directory: the stored trades and candles equal the
live run's, row by row."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fakes.base import FakeExchange
from fakes.binance_server import FakeBinance, faulty_session
from fakes.coinbase_server import FakeCoinbase

from tickpipe.history.recording import FramesRecord, Header, RefillRecord, merged
from tickpipe.verify import APPROX, REL_TOL

pytestmark = pytest.mark.slow

TRADE_COLUMNS = (
    "source, exchange, symbol, raw_symbol, trade_id, seq, price, size, side, ts, recv_ts"
)
# Every candle column but `updated_at`, the wall-clock time the row was written.
CANDLE_COLUMNS = (
    "exchange, symbol, interval, start, open, high, low, close, volume, quote_volume, vwap, "
    "mean_price, trades, buy_volume, sell_volume, first_seq, last_seq, final, revision"
)


def _rows(data_dir: Path) -> tuple[list[tuple], list[tuple], list[str]]:
    con = duckdb.connect(str(data_dir / "tickpipe.duckdb"), read_only=True)
    try:
        trades = con.execute(f"SELECT {TRADE_COLUMNS} FROM trades ORDER BY ALL").fetchall()
        candles = con.execute(f"SELECT {CANDLE_COLUMNS} FROM candles ORDER BY ALL").fetchall()
    finally:
        con.close()
    letters = (data_dir / "dead-letters.jsonl").read_text().splitlines()
    return trades, candles, letters


class ServerThread:
    """Any fake exchange on its own event loop thread (as `FakeBinanceThread` runs Binance's)."""

    def __init__(self, make: Callable[[], FakeExchange]) -> None:
        self._make = make
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.server: Any = None

    def __enter__(self) -> ServerThread:
        self._thread.start()
        self.server = self.run(self._make().start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.server is not None:
            self.run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def call(self, fn: Callable[[Any], Any]) -> Any:
        async def call() -> Any:
            return fn(self.server)

        return self.run(call())


async def _coinbase_script(server: FakeCoinbase) -> None:
    """Trades of both products, a duplicate, a malformed frame, a drop with trades made
    meanwhile (fetched again over REST), heartbeats throughout."""
    # A trade made before the source subscribed reaches no one, and no gap check can tell.
    await server.wait_subscribed(1, timeout=30)
    for _ in range(100):
        server.publish("BTC-USD")
        server.publish("ETH-USD")
        await asyncio.sleep(0.002)
    twice = server.trade("BTC-USD")
    server.send(twice, twice)
    server.send_raw(b'{"type":"match","product_id":"BTC-USD","price":"x"}')
    await asyncio.sleep(0.3)
    server.drop_all("scripted drop mid-stream")
    server.skip("BTC-USD", 30)
    server.skip("ETH-USD", 20)
    await server.wait_connections(2, timeout=30)
    await server.wait_subscribed(1, timeout=30)
    for _ in range(100):
        server.publish("BTC-USD")
        server.publish("ETH-USD")
        await asyncio.sleep(0.002)


EXCHANGES = {
    "binance": (
        lambda: FakeBinance(symbols=("BTCUSDT", "ETHUSDT"), ping_interval=0.5),
        faulty_session, ("BTC-USDT", "ETH-USDT"), lambda e: (e["s"], e["t"]), 65,
    ),
    "coinbase": (
        lambda: FakeCoinbase(("BTC-USD", "ETH-USD"), heartbeat_interval=0.2),
        _coinbase_script, ("BTC-USD", "ETH-USD"), lambda e: (e["product_id"], e["trade_id"]), 50,
    ),
}  # fmt: skip


@pytest.mark.parametrize("exchange", list(EXCHANGES))
def test_replay_raw_of_a_recorded_run_stores_the_live_runs_trades_and_candles(
    tmp_path: Path, exchange: str
) -> None:
    make, script, symbols, key, skipped = EXCHANGES[exchange]
    live, replayed, recording = tmp_path / "live", tmp_path / "replayed", tmp_path / "raw"
    with ServerThread(make) as fake:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickpipe", "run", "--quiet", "--no-serve",
             "--no-symbol-check", "--data-dir", str(live), "--record", str(recording),
             "--exchange", exchange, "--endpoint", f"{exchange}={fake.server.url}",
             "--rest-endpoint", f"{exchange}={fake.server.rest_url}",
             *(a for s in symbols for a in ("--symbol", s))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            fake.run(fake.server.wait_connections(1, timeout=30), timeout=40)
            fake.run(script(fake.server), timeout=90)
            made = fake.call(lambda s: [e for trades in s.history.values() for e in trades])
            # Let the last frames travel and the refills finish, and stay well past the
            # engine's 2 s idle timer: at exactly 2 s, whether the last windows closed before
            # the stop was a race the replay (on the recording's clock) could lose either way.
            fake.run(asyncio.sleep(3.5))
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "recorded" in out, out

    # The recording holds the frames of both connections and the trades REST brought back.
    records = [record for _, record in merged(recording)]
    assert {h.connector for h, _ in merged(recording)} == {exchange}
    connects = {r.connects for r in records if isinstance(r, FramesRecord)}
    assert connects == {1, 2}, connects
    refilled = sum(len(r.trades) for r in records if isinstance(r, RefillRecord))
    assert refilled >= skipped  # the trades made while the connection was down

    replay = subprocess.run(
        [sys.executable, "-m", "tickpipe", "replay-raw", str(recording), "--data-dir",
         str(replayed)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "replay-raw:" in replay.stdout

    live_trades, live_candles, live_letters = _rows(live)
    replay_trades, replay_candles, replay_letters = _rows(replayed)
    # The live run stored every trade the exchange made, once: the replay is no empty echo.
    assert len(live_trades) == len({key(e) for e in made})
    assert replay_trades == live_trades
    assert len(live_candles) > 0
    assert len(replay_candles) == len(live_candles)
    names = [name.strip() for name in CANDLE_COLUMNS.split(",")]
    for replayed_row, live_row in zip(replay_candles, live_candles, strict=True):
        for name, a, b in zip(names, replayed_row, live_row, strict=True):
            # Sums may differ in the last bits (the engine's steps group trades differently
            # than live); `verify` holds them to the same bound. Everything else is exact.
            if name in APPROX:
                assert abs(a - b) <= REL_TOL * max(abs(b), 1e-12), (name, replayed_row, live_row)
            else:
                assert a == b, (name, replayed_row, live_row)
    # The same frames were refused for the same reasons.
    assert live_letters
    assert [_reason(letter) for letter in replay_letters] == [
        _reason(letter) for letter in live_letters
    ]


def _reason(letter: str) -> tuple[str, str]:
    import json

    data = json.loads(letter)
    return data["reason"], data["payload"]


def test_a_recording_file_starts_with_a_header_naming_the_instruments(tmp_path: Path) -> None:
    import time

    from tickpipe.history.recording import FrameRecorder, RecordedSource

    recorder = FrameRecorder(tmp_path)
    recorder.add(
        RecordedSource("binance", "binance", None, "ws://x", [("binance", "BTC-USDT", "BTCUSDT")])
    )
    recorder.start()

    async def feed() -> None:
        await recorder.frames_received("binance", 5, 0, 1, [b'{"a":1}', b"\xff\xfe"])
        await recorder.frames_received("binance", 7, 0, 1, [b"text"])

    asyncio.run(feed())
    recorder.close()
    time.sleep(0)
    records = list(merged(tmp_path))
    header = records[0][0]
    assert isinstance(header, Header)
    assert header.instruments == [("binance", "BTC-USDT", "BTCUSDT")]
    kept = [(r.t, r.frames) for _, r in records if isinstance(r, FramesRecord)]
    assert kept == [(5, [b'{"a":1}', b"\xff\xfe"]), (7, [b"text"])]


def _binance_frame(trade_id: int, ts_us: int) -> bytes:
    ms = ts_us // 1000
    return (
        f'{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{ms},"s":"BTCUSDT",'
        f'"t":{trade_id},"p":"{100 + trade_id % 7}.5","q":"0.25","T":{ms},"m":true,"M":true}}}}'
    ).encode()


def test_a_recording_with_a_year_of_quiet_replays_quickly_to_candles_equal_to_the_batch(
    tmp_path: Path,
) -> None:
    """Two runs a year apart in one directory: the quiet year is not ticked through 100 ms at
    a time, and the candles equal `verify`'s batch recomputation from the stored trades."""
    from tickpipe.config import Config
    from tickpipe.history.recording import FrameRecorder, RecordedSource
    from tickpipe.history.replay_raw import replay_raw
    from tickpipe.runtime.clock import ManualClock
    from tickpipe.stores.duckdb import DuckDBStore
    from tickpipe.verify import verify

    year_us = 365 * 86_400 * 1_000_000
    t0 = 1_796_515_200_000_000
    source = RecordedSource(
        "binance", "binance", "trade", "ws://x", [("binance", "BTC-USDT", "BTCUSDT")]
    )
    trade_id = 0
    for run in range(2):
        clock = ManualClock(now_us=t0 + run * year_us)
        recorder = FrameRecorder(tmp_path / "raw", clock=clock)
        recorder.add(source)
        recorder.start()

        async def feed(recorder: FrameRecorder, start_us: int) -> None:
            nonlocal trade_id
            for k in range(50):  # 50 deliveries, 300 ms apart, 3 trades each
                t = start_us + k * 300_000
                frames = [_binance_frame(trade_id + i, t - 1000 * i) for i in range(3)]
                trade_id += 3
                await recorder.frames_received("binance", t, 0, 1, frames)

        asyncio.run(feed(recorder, t0 + run * year_us))
        clock.advance(20.0)
        recorder.close()

    config = Config(data_dir=str(tmp_path / "replayed"), intervals=["1s", "1m", "1h"])
    report = asyncio.run(replay_raw(config, tmp_path / "raw"))
    assert report.trades == trade_id == 300
    assert report.seconds < 60  # 3e8 ticks of 100 ms would take hours

    store = DuckDBStore(tmp_path / "replayed" / "tickpipe.duckdb", read_only=True)
    try:
        checked = verify(store)
    finally:
        store.close()
    assert checked.ok, checked.mismatches
    assert checked.trades == 300 and checked.candles > 0
