"""What is the Cassandra store's own, on a real Cassandra 5.0 node (tests/servers/cassandra.py):
its keyspace and URL settings, partitions bounded by day, a trade copy the row key does not
catch, the write-time revision rule inside one batch, reads across day partitions as DuckDB
answers them, and the node stopped under a writer. The contract suite (tests/stores/contract/)
covers the rest."""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from servers.cassandra import CassandraNode, KeyspacePool
from servers.process import free_port

from stores.rows import T0, M, S, StreamWriter, approx, candle, engine_candles, random_trades, trade
from tickpipe.records import PipelineMetric, RollingStat, Trade, TradeBatch
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
def store(cassandra_keyspaces: KeyspacePool) -> Iterator[CassandraStore]:
    """An open store on empty tables (a pooled keyspace: its tables emptied, not made anew)."""
    with cassandra_keyspaces.keyspace() as keyspace:
        s = CassandraStore(url_of(cassandra_keyspaces.node, keyspace), retry_for=60)
        try:
            yield s
        finally:
            s.close()


def stored_trades(store: CassandraStore, exchange: str = "ex", symbol: str = "BTC-USDT") -> list:
    """Every stored trade of one instrument, oldest first, as rows."""
    return [tuple(t.values()) for t in reversed(store.recent_trades(exchange, symbol, 10**6))]


def as_row(t: Trade) -> tuple:
    return (t.source, t.exchange, t.symbol, t.raw_symbol, t.trade_id, t.seq, t.price, t.size,
            t.side, t.ts, t.recv_ts)  # fmt: skip


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


def test_a_store_opened_on_a_keyspace_missing_a_table_makes_it_again_and_uses_it(
    cassandra_node: CassandraNode, cassandra_keyspace: str
) -> None:
    # A store that finds all its tables skips the DDL; one table gone must not pass for "all".
    CassandraStore(url_of(cassandra_node, cassandra_keyspace)).close()
    with cassandra_node.cluster() as cluster:
        cluster.connect().execute(f"DROP TABLE {cassandra_keyspace}.series_days")
    store = CassandraStore(url_of(cassandra_node, cassandra_keyspace))
    try:
        store.write([TradeBatch.from_trades([trade(1, T0)])])
        assert store.instrument_summary() == [("ex", "BTC-USDT", 1, T0, T0)]
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


# -- trades: partitioned by instrument and day; a copy the key does not catch is reported ------


def test_trades_of_each_day_are_a_partition_of_their_own(
    store: CassandraStore, cassandra_node: CassandraNode
) -> None:
    day = T0 - T0 % D
    trades = [trade(i, day + i * D // 2) for i in range(6)]  # three days
    store.write([TradeBatch.from_trades(trades)], candles=[candle(day), candle(day + D)])
    with cassandra_node.cluster() as cluster:
        session = cluster.connect(store.settings.keyspace)
        trade_parts = list(session.execute("SELECT DISTINCT exchange, symbol, day FROM trades"))
        candle_parts = list(
            session.execute("SELECT DISTINCT exchange, symbol, interval, day FROM candles")
        )
    assert sorted(p.day for p in trade_parts) == [T0 // D + k for k in range(3)]
    assert sorted(p.day for p in candle_parts) == [T0 // D, T0 // D + 1]
    assert stored_trades(store) == [as_row(t) for t in trades]


def test_a_trade_id_resent_at_another_time_is_one_stored_copy_reported(
    store: CassandraStore,
) -> None:
    # The row key holds (ts, seq, trade_id): the same id at another time is another row, which
    # the engine drops within its horizon; what reaches the store anyway, verify is told of.
    store.write([TradeBatch.from_trades([trade(1, T0), trade(2, T0 + 1)])])
    store.write([TradeBatch.from_trades([trade(1, T0 + D), trade(1, T0 + 5, trade_id="1")])])
    assert store.duplicate_trades() == 2
    assert store.totals()["stored_trades"] == 4


# -- candles: the write-time revision rule holds inside one unlogged batch ---------------------


def test_older_revisions_sent_together_as_one_batch_leave_the_newer_ones(
    store: CassandraStore,
) -> None:
    newer = [candle(T0 + i * M, final=True, revision=2, trades=7) for i in range(30)]
    store.write(candles=newer)
    store.write(candles=[candle(T0 + i * M, final=True, revision=1) for i in range(30)])
    store.write(candles=[candle(T0 + i * M, updated_at=T0 + D) for i in range(30)])
    assert store.candles("ex", "BTC-USDT", "1m") == newer


# -- reads across day partitions answer as DuckDB does on the same data ------------------------


def test_every_read_across_day_partitions_answers_as_duckdb_does(
    store: CassandraStore, tmp_path: Path
) -> None:
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


# -- the node goes away mid-stream -------------------------------------------------------------


def test_a_node_stopped_mid_stream_loses_and_doubles_nothing(
    cassandra_node: CassandraNode, cassandra_keyspace: str
) -> None:
    store = CassandraStore(url_of(cassandra_node, cassandra_keyspace), retry_for=120)
    writer = StreamWriter(store)
    try:
        during = writer.through_restart(cassandra_node.stop, cassandra_node.start, 120)
    finally:
        cassandra_node.ensure_running()
    try:
        assert writer.errors == []
        assert during < len(writer.written)  # the writer went on after the restart
        batches = len(writer.written)
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
