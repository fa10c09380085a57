"""The Cassandra store's server: a real Cassandra 5.0 node (tests/servers/cassandra.py) that
the store's tests run against, reached through cassandra-driver."""

from __future__ import annotations

import datetime as dt

import pytest
from servers.cassandra import CassandraNode

pytestmark = pytest.mark.cassandra


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
