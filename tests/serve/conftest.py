"""A DuckDB store filled by the real engine from simulated trades, and the API served over it
by uvicorn on 127.0.0.1 (a free port) in a background thread, as `tickpipe serve` does."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.types import ASGIApp

from tickpipe.config import Config
from tickpipe.engine.candles import CandleEngine, EngineOutput
from tickpipe.records import Candle, RollingStat, TradeBatch
from tickpipe.serve.app import ApiContext, create_app
from tickpipe.serve.server import bind, make_server, url_of
from tickpipe.serve.settings import ServeConfig
from tickpipe.sources.simulated import MarketSimulator
from tickpipe.stores.base import Store
from tickpipe.stores.duckdb import DuckDBStore

S = 1_000_000
MINUTES = 12
# Two venues, so rankings have something to rank: "alpha" trades three times as often.
VENUES = {"alpha": (["BTC-USDT", "ETH-USDT", "SOL-USDT", "DOGE-USDT"], 60.0, 1),
          "beta": (["BTC-USDT", "XRP-USDT"], 20.0, 2)}  # fmt: skip


@dataclass
class Served:
    url: str
    store: DuckDBStore
    end: int  # µs: the newest event time the store can hold


def fill_store(path: Path, minutes: int = MINUTES) -> int:
    """Run the engine over `minutes` of simulated trades ending now; store what it produces."""
    end = time.time_ns() // 1000
    end -= end % S
    store = DuckDBStore(path)
    try:
        simulate(store, end, minutes)
    finally:
        store.close()
    return end


def simulate(
    store: Store,
    end: int,
    minutes: int = MINUTES,
    one_write: bool = False,
    rate_factor: float = 1.0,
) -> None:
    """Write into `store` what the engine makes of `minutes` of simulated trades ending at
    `end` (µs): the same data for the same `end`, whatever the store. A minute's output goes
    in one write (a candle's latest update only), as a store writer coalesces a busy feed's:
    per-step writes cost FerretDB minutes. `one_write`: the whole run's output in one write,
    the same rows in the end (each candle's and statistic's latest update; the engine's
    updates of a candle only rise in precedence), for tests of what is read back: FerretDB
    1.x scans its whole collection for each candle a later write updates. `rate_factor`: the
    venues' trade rates times this (the same instruments and seeds, fewer trades).
    """
    engine = CandleEngine(Config().engine_config())
    start = end - minutes * 60 * S
    markets = {
        venue: MarketSimulator(symbols, rate * rate_factor, seed, exchange=venue, source=venue)
        for venue, (symbols, rate, seed) in VENUES.items()
    }
    trades: list[TradeBatch] = []
    candles: dict[tuple[str, str, str, int], Candle] = {}
    rolling: dict[tuple[str, str, int], RollingStat] = {}

    def keep(out: EngineOutput) -> None:
        trades.extend([out.accepted] if out.accepted else [])
        candles.update(((c.exchange, c.symbol, c.interval, c.start), c) for c in out.candles)
        rolling.update(((r.exchange, r.symbol, r.ts), r) for r in out.rolling)

    for t in range(start, end, 10 * S):
        for market in markets.values():
            keep(engine.process(market.span(t, t + 10 * S), t + 10 * S))
        keep(engine.tick(t + 10 * S))
        if not one_write and ((t + 10 * S - start) % (60 * S) == 0 or t + 10 * S >= end):
            store.write(trades, list(candles.values()), list(rolling.values()))
            trades, candles, rolling = [], {}, {}
    flushed = engine.flush(end + 60 * S)
    if one_write:
        candles.update(((c.exchange, c.symbol, c.interval, c.start), c) for c in flushed)
        store.write(trades, list(candles.values()), list(rolling.values()))
    else:
        store.write([], flushed)


class ApiThread:
    """uvicorn serving `app` on 127.0.0.1 with a free port, on its own thread and loop; over
    HTTPS when `serve` names a certificate and key."""

    def __init__(self, app, serve: ServeConfig | None = None) -> None:
        self.sock = bind("127.0.0.1", 0)
        self.url = url_of(self.sock, bool(serve and serve.tls_cert))
        self.server = make_server(app, serve=serve)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(0.01)

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@contextmanager
def api_over(path: Path, make_app: Callable[[DuckDBStore], ASGIApp]) -> Iterator[str]:
    """The URL of `make_app(store)` served over the stored file, read-only, while inside."""
    store = DuckDBStore(path, read_only=True)
    api = ApiThread(make_app(store))
    try:
        yield api.url
    finally:
        api.stop()
        store.close()


@pytest.fixture(scope="session")
def stored_path(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("serve") / "tickpipe.duckdb"
    return path, fill_store(path)


@pytest.fixture(scope="session")
def served(stored_path: tuple[Path, int]) -> Iterator[Served]:
    """The API over the filled store, read-only and with no hub: `tickpipe serve`."""
    path, end = stored_path
    store = DuckDBStore(path, read_only=True)
    api = ApiThread(create_app(ApiContext(store)))
    try:
        yield Served(api.url, store, end)
    finally:
        api.stop()
        store.close()
