"""The MongoDB store's server: FerretDB 1.x standing in for MongoDB
(tests/servers/ferretdb.py), reached through pymongo over the MongoDB wire protocol."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from servers.ferretdb import FerretDBServer

from stores.rows import T0, M, S, candle, trade
from stores.test_postgresql import _approx, _engine_candles, _random_trades
from tickpipe.config import ConfigError, load_config
from tickpipe.records import Candle, PipelineMetric, RollingStat, Trade, TradeBatch
from tickpipe.stores.base import StoreError
from tickpipe.stores.duckdb import DuckDBStore
from tickpipe.stores.mongodb import MongoStore


def test_documents_bulk_written_through_pymongo_read_back_and_a_unique_index_refuses_a_duplicate(
    ferretdb_server: FerretDBServer, mongodb_database: str
) -> None:
    # Imported here: without pymongo the fixture has already skipped (or failed, in CI).
    from pymongo import ASCENDING, InsertOne
    from pymongo.errors import BulkWriteError

    with ferretdb_server.client() as client:
        trades = client[mongodb_database]["trades"]
        trades.create_index(
            [("exchange", ASCENDING), ("symbol", ASCENDING), ("trade_id", ASCENDING)],
            unique=True,
        )
        batch = [
            InsertOne({"exchange": "binance", "symbol": "BTC-USDT", "trade_id": t, "price": p})
            for t, p in (("1", 97_000.5), ("2", 97_001.0), ("1", 1.0))
        ]
        with pytest.raises(BulkWriteError) as refused:
            trades.bulk_write(batch, ordered=False)
        found = trades.find({"symbol": "BTC-USDT"}, {"_id": 0, "trade_id": 1, "price": 1})

        assert refused.value.details["nInserted"] == 2
        assert [e["code"] for e in refused.value.details["writeErrors"]] == [11000]
        assert sorted((d["trade_id"], d["price"]) for d in found) == [
            ("1", 97_000.5),
            ("2", 97_001.0),
        ]


# -- the MongoDB store ------------------------------------------------------------------------


@pytest.fixture
def mongodb_url(ferretdb_server: FerretDBServer, mongodb_database: str) -> str:
    return f"{ferretdb_server.uri}{mongodb_database}"


@pytest.fixture
def store(mongodb_url: str) -> Iterator[MongoStore]:
    s = MongoStore(mongodb_url, retry_for=60)
    yield s
    s.close()


def stored_trades(store: MongoStore) -> list[Trade]:
    (batch,) = store.restore_batches({("ex", "BTC-USDT"): 0}, rows=1_000_000)
    return batch.to_trades()


def test_trades_round_trip_with_every_column(store: MongoStore) -> None:
    trades = [trade(i, T0 + i * S, trade_id=f"id-{i}", side=("buy", "sell")[i % 2])
              for i in range(5)]  # fmt: skip
    store.write([TradeBatch.from_trades(trades)])
    got = stored_trades(store)
    assert [msgspec.structs.asdict(t) for t in got] == [
        {**msgspec.structs.asdict(t), "source": "restore"} for t in trades
    ]


def test_a_duplicate_trade_is_stored_once_and_counted(store: MongoStore) -> None:
    first = [trade(i, T0 + i * S) for i in range(10)]
    store.write([TradeBatch.from_trades(first)])
    store.write([TradeBatch.from_trades([*first[5:], trade(10, T0 + 10 * S)])])  # a replay
    assert [t.seq for t in stored_trades(store)] == list(range(11))
    assert store.duplicate_trades == 5
    assert store.totals()["stored_trades"] == 11


def test_the_same_trade_id_on_another_symbol_or_exchange_is_another_trade(
    store: MongoStore,
) -> None:
    trades = [trade(1, T0), trade(1, T0, symbol="ETH-USDT"), trade(1, T0, exchange="other")]
    store.write([TradeBatch.from_trades(trades)])
    assert store.totals()["stored_trades"] == 3
    assert store.duplicate_trades == 0


def stored_candle(store: MongoStore, start: int) -> Candle:
    (c,) = store.candles("ex", "BTC-USDT", "1m", start, start + 1)
    return c


def test_a_newer_revision_replaces_a_candle_and_an_older_one_is_ignored(
    store: MongoStore,
) -> None:
    store.write(candles=[candle(T0, close=1.0)])
    store.write(candles=[candle(T0, close=2.0)])  # a later provisional update
    assert stored_candle(store, T0).close == 2.0
    store.write(candles=[candle(T0, close=3.0, final=True)])
    store.write(candles=[candle(T0, close=4.0)])  # stale provisional: the final one stays
    assert (stored_candle(store, T0).close, stored_candle(store, T0).final) == (3.0, True)
    store.write(candles=[candle(T0, close=5.0, final=True, revision=2)])  # a correction
    store.write(candles=[candle(T0, close=6.0, final=True, revision=1)])  # an older one
    assert (stored_candle(store, T0).close, stored_candle(store, T0).revision) == (5.0, 2)
    store.write(candles=[candle(T0, close=5.0, final=True, revision=2)])  # a replay converges
    assert stored_candle(store, T0) == candle(T0, close=5.0, final=True, revision=2)
    assert store.totals()["stored_candles"] == 1


def test_the_last_update_of_a_candle_in_one_write_wins(store: MongoStore) -> None:
    store.write(candles=[candle(T0, close=c) for c in (1.0, 2.0, 3.0)] + [candle(T0 + M)])
    assert stored_candle(store, T0).close == 3.0
    assert store.totals()["stored_candles"] == 2


def test_rolling_stats_metrics_and_events_are_kept_and_replays_store_them_once(
    store: MongoStore, mongodb_url: str
) -> None:
    stat = RollingStat(exchange="ex", symbol="BTC-USDT", ts=T0, avg_close_30m=1.0,
                       min_price_5m=0.5, max_price_5m=2.0, avg_price_5m=1.5)  # fmt: skip
    metric = PipelineMetric(ts=T0, process="embedded", period_s=5.0, trades=10,
                            trades_per_s=2.0, candles=3, lag_p50_ms=1.0, lag_p99_ms=9.0,
                            queue_depth=0)  # fmt: skip
    events = [(T0, "gap", "feed", '{"n": 1}'), (T0 + 1, "disconnect", "feed", "{}")]
    for _ in range(2):
        store.write(rolling=[stat], metrics=[metric], events=events)
    newer = msgspec.structs.replace(stat, avg_close_30m=7.0)
    store.write(rolling=[newer], metrics=[msgspec.structs.replace(metric, trades=11)])

    assert store.rolling_history("ex", "BTC-USDT", 10) == [msgspec.structs.asdict(newer)]
    assert store.totals()["events"] == {"disconnect": 1, "gap": 1}
    from pymongo import MongoClient

    with MongoClient(mongodb_url) as client:
        kpis = list(client.get_default_database().pipeline_metrics.find({}, {"_id": 0}))
    assert kpis == [{**msgspec.structs.asdict(metric), "trades": 11}]


def test_every_read_answers_as_duckdb_does(store: MongoStore, tmp_path: Path) -> None:
    trades = _random_trades(300) + [
        trade(10_000 + i, T0 + i * 7 * S, exchange="beta", symbol=s, price=10.0 + i, size=0.5,
              side="sell")
        for i, s in enumerate(["BTC-USDT", "XRP-USDT", "XRP-USDT", "BTC-USDT"])
    ]  # fmt: skip
    trades.append(trade(20_000, trades[10].ts, price=55.5))  # a tie in time, broken by seq
    candles = _engine_candles([t for t in trades if t.exchange == "ex"], "1s")
    candles[3] = msgspec.structs.replace(candles[3], revision=2)
    stat = RollingStat(exchange="ex", symbol="BTC-USDT", ts=T0, avg_close_30m=1.0,
                       min_price_5m=0.5, max_price_5m=2.0, avg_price_5m=1.5)  # fmt: skip
    duck = DuckDBStore(tmp_path / "t.duckdb")
    try:
        for s in (store, duck):
            s.write(
                [TradeBatch.from_trades(trades)], candles=candles, rolling=[stat],
                events=[(T0, "gap", "feed", "{}"), (T0 + 1, "disconnect", "feed", "{}")],
            )  # fmt: skip
        end = trades[-1].ts + 1
        middle = trades[150].ts
        for call in (
            lambda s: s.intervals(),
            lambda s: s.instrument_summary(),
            lambda s: s.recent_trades("ex", "BTC-USDT", 25),
            lambda s: s.rolling_history("ex", "BTC-USDT", 5),
            lambda s: s.totals(),
            lambda s: s.top_exchanges(T0, end, "trades", 10),
            lambda s: s.top_exchanges(T0, end, "volume", 1),
            lambda s: s.top_tickers(T0, end, "trades", 10),
            lambda s: s.top_tickers(T0, middle, "volume", 10),
            lambda s: s.exchange_breakdown("beta", T0, end),
            lambda s: s.exchange_breakdown("ex", T0, middle),
            lambda s: s.exchange_breakdown("nowhere", T0, end),
            lambda s: s.has_instrument("ex", "BTC-USDT"),
            lambda s: s.has_instrument("ex", "NOPE-USDT"),
            lambda s: s.has_exchange("beta"),
            lambda s: s.has_exchange("nowhere"),
            lambda s: s.candles("ex", "BTC-USDT", "1s"),
            lambda s: s.candles("ex", "BTC-USDT", "1s", T0 + M, T0 + 3 * M),
            lambda s: s.candles("ex", "BTC-USDT", "1s", T0, T0 + 5 * M, 5 * S, S),
            lambda s: s.candles("ex", "BTC-USDT", "1s", None, None, M, S),
            lambda s: s.finals(T0),
            lambda s: s.revisions(T0),
            lambda s: s.restore_cutoff(2 * M, 0, M),
            lambda s: [b.to_trades() for b in s.restore_batches({("ex", "BTC-USDT"): middle})],
        ):
            assert _approx(call(store)) == _approx(call(duck))
    finally:
        duck.close()


def test_candles_are_rebucketed_in_python_on_ferretdb_and_the_log_says_so(
    mongodb_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tickpipe"):
        s = MongoStore(mongodb_url)
    s.close()
    assert s.pipeline is False  # FerretDB 1.x: $group has no $min/$max/$first/$last
    assert "candles re-bucketed in Python" in caplog.text


def test_restore_returns_each_trade_from_the_cutoff_once_in_time_order(
    store: MongoStore,
) -> None:
    trades = [trade(i, T0 + i * 10 * S) for i in range(60)]
    trades += [trade(i, T0 + i * 20 * S, symbol="ETH-USDT") for i in range(30)]
    store.write([TradeBatch.from_trades(trades)])
    cutoff = store.restore_cutoff(horizon=2 * M, lateness=0, align=M)
    batches = list(store.restore_batches(cutoff, rows=7))
    assert all(len(b) <= 7 for b in batches)
    got = [t for b in batches for t in b.to_trades()]
    expected = [t for t in trades if t.ts >= cutoff[(t.exchange, t.symbol)]]
    assert sorted((t.symbol, t.seq) for t in got) == sorted((t.symbol, t.seq) for t in expected)
    assert [t.ts for t in got] == sorted(t.ts for t in got)


def test_restore_of_an_empty_store_is_empty(store: MongoStore) -> None:
    assert store.restore_cutoff(M, 0, M) == {}
    assert list(store.restore_batches({})) == []


# -- settings and an unreachable server ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mongodb://127.0.0.1:27017/tick?tls=maybe", "client option tls='maybe' refused"),
        ("mongodb://127.0.0.1:27017/tick?w=1&frobnicate=2", "client option frobnicate='2'"),
        ("mongodb://u:secret@127.0.0.1:27017", "name the database"),
    ],
)
def test_a_bad_mongodb_setting_is_one_line_naming_it(url: str, named: str) -> None:
    with pytest.raises(ConfigError) as bad:
        load_config(env={}, overrides={"store": url})
    message = str(bad.value)
    assert message.startswith("config error: store = ") and named in message
    assert "\n" not in message and "secret" not in message


def test_client_settings_in_the_url_pass_through(mongodb_url: str) -> None:
    s = MongoStore(f"{mongodb_url}?w=1&journal=false&appname=mine&serverSelectionTimeoutMS=3000")
    try:
        client = s._client  # noqa: SLF001 (what the driver was given)
        assert client.write_concern.document == {"w": 1, "j": False}
        assert client.options.pool_options.metadata["application"]["name"] == "mine"
        assert client.options.server_selection_timeout == 3
    finally:
        s.close()


def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    began = time.monotonic()
    with pytest.raises(StoreError) as failed:
        MongoStore(f"mongodb://tp:secret@127.0.0.1:{port}/tick", connect_timeout=0.5)
    message = str(failed.value)
    assert message.startswith(f"cannot use MongoDB at mongodb://tp@127.0.0.1:{port}/tick: ")
    assert "\n" not in message and "secret" not in message
    assert time.monotonic() - began < 10


def test_writes_wait_for_a_server_that_comes_back_and_lose_nothing(
    ferretdb_server: FerretDBServer, mongodb_url: str
) -> None:
    store = MongoStore(mongodb_url, retry_for=60, connect_timeout=1)
    written: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer() -> None:
        i = 0
        try:
            while not stop.is_set() or i < 30:
                batch = [trade(i * 100 + j, T0 + (i * 100 + j) * 1000) for j in range(100)]
                store.write([TradeBatch.from_trades(batch)], candles=[candle(T0 + i * M)])
                written.append(i)
                i += 1
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 5 and thread.is_alive():
            time.sleep(0.01)
        ferretdb_server.stop()
        time.sleep(1.5)  # writes fail and retry while the server is down
        during = len(written)
        ferretdb_server.start()
        time.sleep(0.5)
        stop.set()
        thread.join(90)
    finally:
        stop.set()
        thread.join(90)
    try:
        assert errors == []
        assert during < len(written)  # the writer went on after the restart
        totals = store.totals()
        assert totals["stored_trades"] == len(written) * 100
        assert totals["stored_candles"] == len(written)
        assert len({t.seq for t in stored_trades(store)}) == len(written) * 100
    finally:
        store.close()


def test_a_write_gives_up_after_its_deadline_with_one_clear_error(
    ferretdb_server: FerretDBServer, mongodb_url: str
) -> None:
    store = MongoStore(mongodb_url, retry_for=1.5, connect_timeout=0.5)
    try:
        ferretdb_server.stop()
        began = time.monotonic()
        with pytest.raises(StoreError, match=r"write failed for 1.5s \(\d+ attempts\)"):
            store.write([TradeBatch.from_trades([trade(1, T0)])])
        assert 1.4 < time.monotonic() - began < 10
    finally:
        ferretdb_server.start()
        store.close()


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_over_mongodb_stores_every_trade_once(mongodb_url: str, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tickpipe", "demo", "--duration", "5", "--quiet", "--no-serve",
         "--store", mongodb_url, "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert not (tmp_path / "tickpipe.duckdb").exists()  # the data went to MongoDB
    store = MongoStore(mongodb_url)
    try:
        totals = store.totals()
        summary = store.instrument_summary()
        assert totals["stored_trades"] > 1_000 and len(summary) >= 15
        assert sum(n for _, _, n, _, _ in summary) == totals["stored_trades"]
        assert totals["stored_candles"] > 0 and "1m" in store.intervals()
        exchange, symbol = summary[0][:2]
        assert store.candles(exchange, symbol, "1m")
    finally:
        store.close()


def test_a_write_of_many_candle_updates_at_once_completes(store: MongoStore) -> None:
    # FerretDB hangs on a bulk of 100+ updates: the store sends them in smaller bulks.
    store.write(candles=[candle(T0 + i * M) for i in range(300)])
    store.write(candles=[candle(T0 + i * M, close=9.0) for i in range(300)])
    assert {c.close for c in store.candles("ex", "BTC-USDT", "1m")} == {9.0}
