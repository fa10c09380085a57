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

import pytest
from servers.ferretdb import FerretDBServer

from stores.rows import T0, M, S, candle, trade
from tickpipe.config import ConfigError, load_config
from tickpipe.credentials import STORE_PASSWORD_ENV
from tickpipe.records import Trade, TradeBatch
from tickpipe.stores.base import StoreError
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
    return [t for batch in store.trade_batches() for t in batch.to_trades()]


def test_a_replayed_trade_is_refused_by_the_unique_index_and_counted(store: MongoStore) -> None:
    first = [trade(i, T0 + i * S) for i in range(10)]
    store.write([TradeBatch.from_trades(first)])
    store.write([TradeBatch.from_trades([*first[5:], trade(10, T0 + 10 * S)])])  # a replay
    assert store.refused_trades == 5
    assert store.totals()["stored_trades"] == 11


def test_candles_are_rebucketed_in_python_on_ferretdb_and_the_log_says_so(
    mongodb_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tickpipe"):
        s = MongoStore(mongodb_url)
    s.close()
    assert s.pipeline is False  # FerretDB 1.x: $group has no $min/$max/$first/$last
    assert "candles re-bucketed in Python" in caplog.text
    assert s.rule_in_filter is False  # FerretDB 1.x scans for any update filter but `_id`
    assert "candle updates filtered by _id alone" in caplog.text


def test_intervals_are_listed_from_their_own_collection_also_for_a_database_written_before_it(
    ferretdb_server: FerretDBServer, mongodb_url: str, mongodb_database: str
) -> None:
    s = MongoStore(mongodb_url)
    try:
        s.write(candles=[candle(T0), candle(T0, interval="5m"), candle(T0 + M)])
        s.write(candles=[candle(T0, interval="1h")])
        assert s.intervals() == ["1h", "1m", "5m"]
    finally:
        s.close()
    with ferretdb_server.client() as client:
        db = client[mongodb_database]
        assert sorted(d["_id"] for d in db["intervals"].find({})) == ["1h", "1m", "5m"]
        db.drop_collection("intervals")  # as an older tickpipe left the database
    again = MongoStore(mongodb_url)
    try:
        assert again.intervals() == ["1h", "1m", "5m"]  # listed once, from the candles
        again.write(candles=[candle(T0, interval="1s")])
        assert again.intervals() == ["1h", "1m", "1s", "5m"]
    finally:
        again.close()


def test_the_revision_rule_in_the_update_filter_matches_only_an_outranked_candle(
    store: MongoStore,
) -> None:
    # The filter MongoDB gets (FerretDB too, when asked): a newer candle another writer
    # stored after this write read the precedences is left as it is.
    from tickpipe.stores.mongodb import CANDLE_KEY, _doc, _precedence, _update_filter

    store.write(candles=[candle(T0, close=5.0, final=True, revision=2)])
    for update, matched in ((candle(T0, close=6.0, final=True, revision=1), 0),
                            (candle(T0, close=7.0, final=False, revision=2), 0),
                            (candle(T0, close=8.0, final=True, revision=2), 1),
                            (candle(T0, close=9.0, final=False, revision=3), 1)):  # fmt: skip
        doc = _doc(update, CANDLE_KEY, precedence=_precedence(update))
        flt = _update_filter(doc, rule_in_filter=True)
        done = store._db.candles.update_one(flt, {"$set": {"close": 0.0}})  # noqa: SLF001
        assert done.matched_count == matched, update


# -- settings and an unreachable server ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "named", "env"),
    [
        ("mongodb://127.0.0.1:27017/tick?tls=maybe", "client option tls='maybe' refused", {}),
        ("mongodb://127.0.0.1:27017/tick?w=1&frobnicate=2", "client option frobnicate='2'", {}),
        # the password as it now arrives: from the environment, put into the URL
        ("mongodb://u@127.0.0.1:27017", "name the database", {STORE_PASSWORD_ENV: "secret"}),
    ],
)
def test_a_bad_mongodb_setting_is_one_line_naming_it(
    url: str, named: str, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError) as bad:
        load_config(env=env, overrides={"store": url})
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


@pytest.mark.parametrize(
    ("code", "message", "retried"),
    [
        (11600, "interrupted at shutdown", True),  # MongoDB's ShutdownInProgress
        (10107, "not primary", True),  # a replica set's primary stepped down
        (1, "[msg_insert.go:168] context canceled", True),  # FerretDB 1.x shutting down
        (1, "some other internal error", False),
        (2, "BadValue", False),
        (18, "Authentication failed", False),
    ],
)
def test_a_request_the_server_cut_short_counts_as_interrupted_and_a_refused_one_does_not(
    code: int, message: str, retried: bool
) -> None:
    from pymongo.errors import OperationFailure

    from tickpipe.stores.mongodb import _interrupted

    assert _interrupted(OperationFailure(message, code=code)) is retried


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
