"""Trades and candles as the store tests write them, and how their reads are compared
(shared by every store's tests)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, Trade, TradeBatch
from tickpipe.stores.base import Store

S = 1_000_000
M = 60 * S
T0 = 1_700_000_040 * S  # minute-aligned


def trade(i: int, ts: int, *, exchange="ex", symbol="BTC-USDT", raw="BTCUSDT", trade_id=None,
          price=100.0, size=1.0, side="buy", source="feed") -> Trade:  # fmt: skip
    return Trade(
        source=source, exchange=exchange, symbol=symbol, raw_symbol=raw,
        trade_id=str(i) if trade_id is None else trade_id, seq=i, price=price, size=size,
        side=side, ts=ts, recv_ts=ts + 1234,
    )  # fmt: skip


def candle(start: int, **fields) -> Candle:
    values = dict(
        exchange="ex", symbol="BTC-USDT", interval="1m", start=start, open=1.0, high=2.0,
        low=0.5, close=1.5, volume=3.0, quote_volume=4.5, vwap=1.5, mean_price=1.25, trades=3,
        buy_volume=1.0, sell_volume=2.0, first_seq=10, last_seq=12, final=False, revision=0,
        updated_at=start + 1,
    )  # fmt: skip
    values.update(fields)
    return Candle(**values)


def engine_candles(trades: list[Trade], window: str) -> list[Candle]:
    engine = CandleEngine(EngineConfig(windows=(parse_window(window),)))
    out = engine.process(TradeBatch.from_trades(trades), trades[-1].ts)
    latest = {(c.exchange, c.symbol, c.start): c for c in out.candles}
    latest.update(
        {(c.exchange, c.symbol, c.start): c for c in engine.flush(trades[-1].ts + 10 * M)}
    )
    return [latest[k] for k in sorted(latest)]


def random_trades(n: int, seed: int = 7, start: int = T0) -> list[Trade]:
    rng = random.Random(seed)
    ts, price, out = start, 100.0, []
    for i in range(n):
        ts += rng.randrange(1, 3 * S)
        price *= 1 + rng.gauss(0, 0.001)
        out.append(trade(i, ts, price=round(price, 2), size=round(rng.uniform(0.01, 2), 4),
                         side=rng.choice(["buy", "sell"])))  # fmt: skip
    return out


def approx(value):
    """Sums of floats may differ in the last bits between databases; nothing else may."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-12)
    if isinstance(value, dict):
        return {k: approx(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(approx(v) for v in value)
    if isinstance(value, set):
        return value
    if isinstance(value, Candle):
        return approx({f: getattr(value, f) for f in value.__struct_fields__})
    return value


class StreamWriter:
    """A thread writing to `store` as a pipeline does, batch after batch (100 trades with new
    seqs and one candle each), until `finish` and at least 30 batches: the writer a server
    stopped mid-stream must leave with nothing lost and nothing doubled."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.written: list[int] = []  # the batches whose write returned
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        i = 0
        try:
            while not self._stop.is_set() or i < 30:
                batch = [trade(i * 100 + j, T0 + (i * 100 + j) * 1000) for j in range(100)]
                self.store.write([TradeBatch.from_trades(batch)], candles=[candle(T0 + i * M)])
                self.written.append(i)
                i += 1
        except BaseException as exc:
            self.errors.append(exc)

    def through_restart(
        self, stop: Callable[[], object], start: Callable[[], object], timeout_s: float
    ) -> int:
        """Writes on while the server is stopped for a second and started again, then
        finishes; returns how many batches were written before it came back."""
        try:
            while len(self.written) < 10 and self._thread.is_alive():
                time.sleep(0.01)
            stop()
            time.sleep(1.0)  # writes fail and retry while the server is down
            during = len(self.written)
            start()
            time.sleep(0.5)
        finally:
            self._stop.set()
            self._thread.join(timeout_s)
        return during
