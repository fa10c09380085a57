"""The Cassandra store against a real Cassandra 5.0 node (tests/servers/cassandra.py): trades
stored once, the revision rule, partitions bounded by day, every read answering as DuckDB does
on the same data, a restart's reads, and the node stopped under a writer."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from servers.cassandra import CassandraNode
from servers.process import free_port

from stores.rows import T0, M, S, approx, candle, engine_candles, random_trades, trade
from tickpipe.records import Candle, PipelineMetric, RollingStat, Trade, TradeBatch
from tickpipe.stores.base import StoreError, open_store
from tickpipe.stores.cassandra import DAY_US, CassandraStore
from tickpipe.stores.duckdb import DuckDBStore

pytestmark = pytest.mark.cassandra
D = DAY_US


def test_a_row_written_through_cassandra_driver_reads_back_and_if_not_exists_writes_once(
    cassandra_node: CassandraNode, cassandra_keyspace: str
) -> None:
    with cassandra_node.cluster() as cluster:
        session = cluster.connect(cassandra_keyspace)
        session.execute(
            "CREATE TABLE trades (exchange text, symbol text, day date, ts_us bigint,"
            " trade_id text, price double, PRIMARY KEY ((exchange, symbol, day), ts_us, trade_id))"
        )
        insert = session.prepare(
            "INSERT INTO trades (exchange, symbol, day, ts_us, trade_id, price)"
            " VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"
        )
        day = dt.date(2026, 12, 5)
        first = session.execute(insert, ("binance", "BTC-USDT", day, 1_000_000, "7", 97_000.5))
        again = session.execute(insert, ("binance", "BTC-USDT", day, 1_000_000, "7", 1.0))
        rows = session.execute(
            "SELECT trade_id, price FROM trades WHERE exchange = %s AND symbol = %s AND day = %s",
            ("binance", "BTC-USDT", day),
        )

        assert first.was_applied
        assert not again.was_applied
        assert [(row.trade_id, row.price) for row in rows] == [("7", 97_000.5)]


def url_of(node: CassandraNode, keyspace: str, **options: str) -> str:
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"cassandra://{node.host}:{node.port}/{keyspace}" + (f"?{query}" if query else "")


@pytest.fixture
def store(cassandra_node: CassandraNode, cassandra_keyspace: str) -> Iterator[CassandraStore]:
    s = CassandraStore(url_of(cassandra_node, cassandra_keyspace), retry_for=60)
    yield s
    s.close()


def stored_trades(store: CassandraStore, exchange: str = "ex", symbol: str = "BTC-USDT") -> list:
    """Every stored trade of one instrument, oldest first, as rows."""
    return [tuple(t.values()) for t in reversed(store.recent_trades(exchange, symbol, 10**6))]


def as_row(t: Trade) -> tuple:
    return (t.source, t.exchange, t.symbol, t.raw_symbol, t.trade_id, t.seq, t.price, t.size,
            t.side, t.ts, t.recv_ts)  # fmt: skip


def stored_candle(store: CassandraStore, start: int) -> Candle:
    (c,) = store.candles("ex", "BTC-USDT", "1m", start, start + 1)
    return c


# -- opening: the store makes its keyspace and tables; bad settings, one line -----------------


def test_the_store_creates_its_keyspace_with_the_configured_replication_factor(
    cassandra_node: CassandraNode,
) -> None:
    keyspace = f"made_{random.randrange(10**9)}"
    store = open_store(url_of(cassandra_node, keyspace, replication_factor="1"), None)
    try:
        assert isinstance(store, CassandraStore)
        with cassandra_node.cluster() as cluster:
            session = cluster.connect()
            (row,) = session.execute(
                "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s",
                [keyspace],
            )
            tables = {r.table_name for r in session.execute(
                "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", [keyspace]
            )}  # fmt: skip
            session.execute(f"DROP KEYSPACE {keyspace}")
        assert row.replication["replication_factor"] == "1"
        assert {"trades", "candles", "rolling_stats", "pipeline_metrics", "events"} <= tables
    finally:
        store.close()


def test_an_unreachable_node_is_one_clear_error_without_the_password() -> None:
    url = f"cassandra://me:secret@127.0.0.1:{free_port()}/ks"
    with pytest.raises(StoreError) as caught:
        CassandraStore(url, connect_timeout_s=1)
    message = str(caught.value)
    assert message.startswith("cannot connect to Cassandra at cassandra://me@127.0.0.1:")
    assert "secret" not in message and "\n" not in message


def test_a_consistency_level_one_node_cannot_give_fails_each_write_with_one_line(
    cassandra_node: CassandraNode, cassandra_keyspace: str
) -> None:
    url = url_of(cassandra_node, cassandra_keyspace, consistency="two")
    store = CassandraStore(url, retry_for=0.5)
    try:
        with pytest.raises(StoreError, match=r"write failed for 0.5s .*(Unavailable|replica)"):
            store.write([TradeBatch.from_trades([trade(1, T0)])])
    finally:
        store.close()


# -- trades: stored once, partitioned by instrument and day ------------------------------------


def test_trades_round_trip_with_every_column(store: CassandraStore) -> None:
    trades = [trade(1, T0, side="sell", price=101.5, size=0.25), trade(2, T0 + 5, trade_id="b-2")]
    store.write([TradeBatch.from_trades(trades)])
    assert stored_trades(store) == [as_row(t) for t in trades]


def test_a_replayed_flush_and_duplicates_inside_one_write_are_stored_once(
    store: CassandraStore,
) -> None:
    batch = TradeBatch.from_trades([trade(1, T0), trade(2, T0 + 1)])
    store.write([batch, batch, TradeBatch.from_trades([trade(1, T0)])])
    store.write([batch])
    assert [r[5] for r in stored_trades(store)] == [1, 2]
    assert store.totals()["stored_trades"] == 2


def test_the_same_trade_id_on_another_symbol_or_exchange_is_another_trade(
    store: CassandraStore,
) -> None:
    trades = [trade(1, T0), trade(1, T0, symbol="ETH-USDT"), trade(1, T0, exchange="other")]
    store.write([TradeBatch.from_trades(trades)])
    assert store.totals()["stored_trades"] == 3


def test_trades_of_each_day_are_a_partition_of_their_own(
    store: CassandraStore, cassandra_node: CassandraNode, cassandra_keyspace: str
) -> None:
    day = T0 - T0 % D
    trades = [trade(i, day + i * D // 2) for i in range(6)]  # three days
    store.write([TradeBatch.from_trades(trades)], candles=[candle(day), candle(day + D)])
    with cassandra_node.cluster() as cluster:
        session = cluster.connect(cassandra_keyspace)
        trade_parts = list(session.execute("SELECT DISTINCT exchange, symbol, day FROM trades"))
        candle_parts = list(
            session.execute("SELECT DISTINCT exchange, symbol, interval, day FROM candles")
        )
    assert sorted(p.day for p in trade_parts) == [T0 // D + k for k in range(3)]
    assert sorted(p.day for p in candle_parts) == [T0 // D, T0 // D + 1]
    assert stored_trades(store) == [as_row(t) for t in trades]


# -- candles: a newer revision wins, an older one is ignored, in any arrival order -----------------

FINAL = candle(T0, final=True, trades=4, updated_at=T0 + 70 * S)
ORDERS = {
    "a later provisional update replaces the whole row": (
        [candle(T0, trades=3)],
        candle(T0, trades=9, close=1.9, high=2.5, volume=8.0, last_seq=30, updated_at=T0 + 9),
    ),
    "a final candle replaces its provisional row": ([candle(T0)], FINAL),
    "a stale provisional update never overwrites the final candle": (
        [FINAL, candle(T0, trades=2, updated_at=T0 + 99 * S)],
        FINAL,
    ),
    "an older revision never overwrites a newer one": (
        [
            candle(T0, final=True, revision=2, trades=6, close=1.1),
            candle(T0, final=True, revision=1, trades=5),
            candle(T0, final=True, revision=0, trades=4, updated_at=T0 + 99 * S),
            candle(T0, final=False, revision=1, trades=9, updated_at=T0 + 99 * S),
        ],
        candle(T0, final=True, revision=2, trades=6, close=1.1),
    ),
    "a correction replaces the final candle": ([FINAL], candle(T0, final=True, revision=1)),
    "replaying the same final candle converges": ([FINAL, FINAL], FINAL),
}


@pytest.mark.parametrize("writes, expected", ORDERS.values(), ids=list(ORDERS))
def test_the_revision_rule(store: CassandraStore, writes: list[Candle], expected: Candle) -> None:
    for c in writes:
        store.write(candles=[c])
    store.write(candles=[expected])
    for c in writes:  # the same updates again, late: the stored candle does not move
        store.write(candles=[c])
    assert stored_candle(store, T0) == expected
    assert store.totals()["stored_candles"] == 1


def test_older_revisions_sent_together_as_one_batch_leave_the_newer_ones(
    store: CassandraStore,
) -> None:
    newer = [candle(T0 + i * M, final=True, revision=2, trades=7) for i in range(30)]
    store.write(candles=newer)
    store.write(candles=[candle(T0 + i * M, final=True, revision=1) for i in range(30)])
    store.write(candles=[candle(T0 + i * M, updated_at=T0 + D) for i in range(30)])
    assert store.candles("ex", "BTC-USDT", "1m") == newer


def test_the_last_update_of_a_candle_in_one_write_wins(store: CassandraStore) -> None:
    store.write(candles=[candle(T0, trades=1), candle(T0, trades=2), candle(T0, trades=3)])
    assert stored_candle(store, T0).trades == 3


def test_finals_and_revisions_list_the_keys_from_a_time_on(store: CassandraStore) -> None:
    store.write(candles=[candle(T0, final=True), candle(T0 + M, final=True, revision=2),
                         candle(T0 + D, revision=1), candle(T0 + D + M)])  # fmt: skip
    key = ("ex", "BTC-USDT", "1m")
    assert store.finals(T0 + 1) == {(*key, T0 + M)}
    assert store.revisions(T0) == {(*key, T0 + M): 2, (*key, T0 + D): 1}


# -- every read answers as DuckDB does on the same data ----------------------------------------


def test_rebucketed_1s_candles_equal_the_engine_at_that_size(store: CassandraStore) -> None:
    trades = random_trades(400)
    store.write(candles=engine_candles(trades, "1s"))
    rolled = store.candles("ex", "BTC-USDT", "1s", bucket=M, interval_size=S)
    direct = engine_candles(trades, "1m")
    assert [c.start for c in rolled] == [c.start for c in direct]
    for a, b in zip(rolled, direct, strict=True):
        assert (a.open, a.high, a.low, a.close, a.trades, a.first_seq, a.last_seq) == (
            b.open, b.high, b.low, b.close, b.trades, b.first_seq, b.last_seq)  # fmt: skip
        assert a.volume == pytest.approx(b.volume)
        assert a.vwap == pytest.approx(b.vwap)
        assert a.mean_price == pytest.approx(b.mean_price)
        assert a.interval == "1m"
    with pytest.raises(ValueError, match="whole multiple"):
        store.candles("ex", "BTC-USDT", "1s", bucket=1500 * 1000, interval_size=S)


def test_every_read_answers_as_duckdb_does(store: CassandraStore, tmp_path: Path) -> None:
    # Two days of one instrument (the reads cross partitions), a second exchange, and two
    # trades at the same instant (the tie is broken by seq in both stores).
    late = T0 + D - 5 * M
    trades = random_trades(300, start=late) + [
        trade(10_000 + i, late + i * 7 * S, exchange="beta", symbol=s, price=10.0 + i, size=0.5,
              side="sell")
        for i, s in enumerate(["BTC-USDT", "XRP-USDT", "XRP-USDT", "BTC-USDT"])
    ]  # fmt: skip
    trades.append(trade(20_000, trades[10].ts, price=55.5))
    candles = engine_candles([t for t in trades if t.exchange == "ex"], "1s")
    candles[3] = msgspec.structs.replace(candles[3], final=True, revision=1)
    rolling = [RollingStat(exchange="ex", symbol="BTC-USDT", ts=late + i * M, avg_close_30m=1.0 + i,
                           min_price_5m=0.5, max_price_5m=2.0 + i, avg_price_5m=1.5)
               for i in range(8)]  # fmt: skip
    metric = PipelineMetric(ts=late, process="embedded", period_s=1.0, trades=5,
                            trades_per_s=5.0, candles=2, lag_p50_ms=1.0, lag_p99_ms=2.0,
                            queue_depth=0)  # fmt: skip
    duck = DuckDBStore(tmp_path / "t.duckdb")
    try:
        for s in (store, duck):
            s.write(
                [TradeBatch.from_trades(trades[:150]), TradeBatch.from_trades(trades[150:])],
                candles=candles, rolling=rolling, metrics=[metric],
                events=[(T0, "gap", "feed", "{}"), (T0 + 1, "disconnect", "feed", "{}"),
                        (T0 + D, "gap", "feed", '{"n": 2}')],
            )  # fmt: skip
        end = trades[-1].ts + 1
        for call in (
            lambda s: s.intervals(),
            lambda s: s.instrument_summary(),
            lambda s: s.recent_trades("ex", "BTC-USDT", 25),
            lambda s: s.recent_trades("ex", "BTC-USDT", 10_000),
            lambda s: s.rolling_history("ex", "BTC-USDT", 5),
            lambda s: s.totals(),
            lambda s: s.top_exchanges(late, end, "trades", 10),
            lambda s: s.top_exchanges(late, end, "volume", 1),
            lambda s: s.top_tickers(late, end, "trades", 10),
            lambda s: s.top_tickers(late + M, end, "volume", 10),
            lambda s: s.exchange_breakdown("beta", late, end),
            lambda s: s.exchange_breakdown("ex", late, end),
            lambda s: s.exchange_breakdown("ex", end, end + M),
            lambda s: s.has_instrument("ex", "BTC-USDT"),
            lambda s: s.has_instrument("ex", "NOPE-USDT"),
            lambda s: s.has_exchange("ex"),
            lambda s: s.has_exchange("nope"),
            lambda s: s.candles("ex", "BTC-USDT", "1s"),
            lambda s: s.candles("ex", "BTC-USDT", "1s", late, late + 5 * M, 5 * S, S),
            lambda s: s.candles("ex", "BTC-USDT", "1s", None, None, M, S),
            lambda s: s.finals(late),
            lambda s: s.revisions(late),
            lambda s: s.restore_cutoff(2 * M, 5 * S, M),
        ):
            assert approx(call(store)) == approx(call(duck))
        cutoff = duck.restore_cutoff(2 * M, 0, M)
        ours = [t for b in store.restore_batches(cutoff, rows=50) for t in b.to_trades()]
        theirs = [t for b in duck.restore_batches(cutoff, rows=50) for t in b.to_trades()]
        assert [as_row(t) for t in ours] == [as_row(t) for t in theirs]
    finally:
        duck.close()


# -- restart ---------------------------------------------------------------------------------


def test_restore_returns_each_trade_from_the_cutoff_once_in_time_order(
    store: CassandraStore,
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
    assert cutoff[("ex", "BTC-USDT")] % M == 0


def test_restore_of_an_empty_store_is_empty(store: CassandraStore) -> None:
    assert store.restore_cutoff(M, 0, M) == {}
    assert list(store.restore_batches({})) == []
    assert store.totals() == {"stored_trades": 0, "stored_candles": 0, "last_trade_ts": None,
                              "last_recv_ts": None, "events": {}}  # fmt: skip


# -- the node goes away mid-stream -------------------------------------------------------------


def test_a_node_stopped_mid_stream_loses_and_doubles_nothing(
    cassandra_node: CassandraNode, cassandra_keyspace: str
) -> None:
    store = CassandraStore(url_of(cassandra_node, cassandra_keyspace), retry_for=120)
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
        while len(written) < 10 and thread.is_alive():
            time.sleep(0.01)
        cassandra_node.stop()
        time.sleep(1.0)  # writes fail and retry while the node is down
        during = len(written)
        cassandra_node.start()
        time.sleep(1.0)
        stop.set()
        thread.join(120)
    finally:
        stop.set()
        thread.join(120)
        cassandra_node.ensure_running()
    try:
        assert errors == []
        assert during < len(written)  # the writer went on after the restart
        batches = len(written)
        totals = store.totals()
        assert totals["stored_trades"] == batches * 100
        assert totals["stored_candles"] == batches
        assert len({r[5] for r in stored_trades(store)}) == batches * 100
    finally:
        store.close()


def test_a_write_gives_up_after_its_deadline_with_one_clear_error(
    cassandra_node: CassandraNode, cassandra_keyspace: str
) -> None:
    store = CassandraStore(url_of(cassandra_node, cassandra_keyspace), retry_for=1.5)
    try:
        cassandra_node.stop()
        began = time.monotonic()
        with pytest.raises(StoreError, match=r"write failed for 1.5s \(\d+ attempts\)") as caught:
            store.write([TradeBatch.from_trades([trade(1, T0)])])
        assert 1.4 < time.monotonic() - began < 15
        assert "\n" not in str(caught.value)
    finally:
        cassandra_node.ensure_running()
        store.close()
