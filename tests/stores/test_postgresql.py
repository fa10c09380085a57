"""What only the PostgreSQL store does, against a real server: replayed events stored once,
all-or-nothing writes, migrations, concurrent writers, and a server restart mid-stream. What
every store must do is the contract suite's (tests/stores/contract/)."""

from __future__ import annotations

import random
import threading
import time

import psycopg
import pytest

from stores.rows import T0, M, StreamWriter, candle, trade
from tickpipe.records import Trade, TradeBatch
from tickpipe.stores.base import OverBudget, StoreError
from tickpipe.stores.postgresql import MIGRATIONS, PostgresStore, redact


@pytest.fixture
def store(postgres_dsn: str):
    s = PostgresStore(postgres_dsn)
    yield s
    s.close()


def stored_trades(store: PostgresStore) -> list[tuple]:
    return store.query(
        "SELECT source, exchange, symbol, raw_symbol, trade_id, seq, price, size, side, ts, "
        "recv_ts FROM trades ORDER BY exchange, symbol, seq"
    )


def as_row(t: Trade) -> tuple:
    return (t.source, t.exchange, t.symbol, t.raw_symbol, t.trade_id, t.seq, t.price, t.size,
            t.side, t.ts, t.recv_ts)  # fmt: skip


def test_a_replayed_event_is_stored_once(store: PostgresStore) -> None:
    gap = (T0, "gap", "feed", '{"first_missing": 5}' + " " * 5000)
    store.write(events=[gap, (T0, "gap", "feed", '{"first_missing": 9}')])
    store.write(events=[gap, gap])
    assert store.totals()["events"] == {"gap": 2}


def test_a_write_failing_midway_leaves_nothing_of_it(store: PostgresStore) -> None:
    bad = candle(T0, exchange=None)  # violates NOT NULL after the trades went in
    with pytest.raises(psycopg.Error):
        store.write([TradeBatch.from_trades([trade(1, T0)])], candles=[bad])
    assert stored_trades(store) == []
    store.write([TradeBatch.from_trades([trade(2, T0)])])  # the store still works
    assert [r[5] for r in stored_trades(store)] == [2]


# -- schema and migrations -----------------------------------------------------------------------


def test_migrations_are_recorded_and_reopening_changes_nothing(postgres_dsn: str) -> None:
    first = PostgresStore(postgres_dsn)
    first.write([TradeBatch.from_trades([trade(1, T0)])], candles=[candle(T0)])
    first.close()
    again = PostgresStore(postgres_dsn)
    try:
        versions = again.query("SELECT version FROM schema_version ORDER BY version")
        assert versions == [(v,) for v, _ in MIGRATIONS]
        assert len(stored_trades(again)) == 1
        assert again.timescale is False  # Debian has no TimescaleDB: plain tables
    finally:
        again.close()


def test_stores_opening_at_once_on_a_new_database_migrate_it_once(postgres_dsn: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            stores.append(PostgresStore(postgres_dsn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        assert stores[0].query("SELECT count(*) FROM schema_version") == [(len(MIGRATIONS),)]
    finally:
        for s in stores:
            s.close()


def test_an_unreachable_server_is_one_clear_error_without_the_password() -> None:
    with pytest.raises(StoreError) as info:
        PostgresStore("postgresql://bob:s3cret@127.0.0.1:1/nowhere", connect_timeout=1)
    message = str(info.value)
    assert message.startswith("cannot connect to PostgreSQL at postgresql://bob@127.0.0.1:1/")
    assert "s3cret" not in message and "\n" not in message


def test_a_user_who_may_not_create_the_schema_gets_one_clear_error(postgres_dsn: str) -> None:
    role = f"reader_{postgres_dsn.rsplit('/', 1)[1]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as con:
        con.execute(f"CREATE ROLE {role} LOGIN")  # PostgreSQL 15: no CREATE on public for it
    try:
        dsn = postgres_dsn.replace("postgresql://postgres@", f"postgresql://{role}@")
        with pytest.raises(StoreError) as info:
            PostgresStore(dsn)
        message = str(info.value)
        assert message.startswith(f"PostgreSQL at postgresql://{role}@127.0.0.1:")
        assert "cannot create or migrate tickpipe's schema: permission denied" in message
        assert "\n" not in message
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as con:
            con.execute(f"DROP OWNED BY {role}")
            con.execute(f"DROP ROLE {role}")


def test_redact_keeps_where_and_drops_the_password() -> None:
    assert redact("postgresql://u:pw@h:5433/db?sslmode=disable") == "postgresql://u@h:5433/db"


def test_two_writers_replaying_the_same_stream_at_once_store_it_once(postgres_dsn: str) -> None:
    """Two processors during a rebalance: the same trades and candle updates, written at the
    same time in different batchings and orders; no deadlock fails a write, nothing doubles."""
    trades = [trade(i, T0 + i * 1000, symbol=f"S{i % 7}-USDT") for i in range(6_000)]
    finals = [candle(T0 + k * M, final=True, trades=k + 1) for k in range(40)]
    stores = [PostgresStore(postgres_dsn) for _ in range(2)]
    errors: list[BaseException] = []

    def replay(store: PostgresStore, seed: int) -> None:
        rng = random.Random(seed)
        try:
            for lo in range(0, len(trades), 500):
                chunk = trades[lo : lo + 500]
                rng.shuffle(chunk)
                updates = [candle(c.start, trades=c.trades - 1) for c in finals] + finals
                rng.shuffle(finals)
                store.write([TradeBatch.from_trades(chunk)], candles=updates + finals)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=replay, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert errors == []
        assert stores[0].query("SELECT count(*), count(DISTINCT (symbol, seq)) FROM trades") == [
            (len(trades), len(trades))
        ]
        stored = {c.start: c for c in stores[0].candles("ex", "BTC-USDT", "1m")}
        assert stored == {c.start: c for c in finals}
    finally:
        for s in stores:
            s.close()


# -- the server goes away mid-stream ---------------------------------------------------------------


def test_a_server_restart_mid_stream_loses_and_doubles_nothing(postgres_server, postgres_dsn):
    store = PostgresStore(postgres_dsn, retry_for=60)
    writer = StreamWriter(store)
    during = writer.through_restart(lambda: postgres_server.stop("fast"), postgres_server.start, 60)
    try:
        assert writer.errors == []
        assert during < len(writer.written)  # the writer went on after the restart
        batches = len(writer.written)
        rows = store.query("SELECT count(*), count(DISTINCT seq) FROM trades")
        assert rows == [(batches * 100, batches * 100)]
        assert store.query("SELECT count(*) FROM candles") == [(batches,)]
    finally:
        store.close()


def test_a_write_gives_up_after_its_deadline_with_one_clear_error(postgres_server, postgres_dsn):
    store = PostgresStore(postgres_dsn, retry_for=1.5)
    try:
        postgres_server.stop("fast")
        began = time.monotonic()
        with pytest.raises(StoreError, match=r"write failed for 1.5s \(\d+ attempts\)"):
            store.write([TradeBatch.from_trades([trade(1, T0)])])
        assert 1.4 < time.monotonic() - began < 10
    finally:
        postgres_server.start()
        store.close()


def test_reads_reconnect_after_the_server_restarts(postgres_server, postgres_dsn):
    store = PostgresStore(postgres_dsn)
    try:
        store.write([TradeBatch.from_trades([trade(1, T0)])], candles=[candle(T0)])
        assert store.totals()["stored_trades"] == 1
        postgres_server.restart("fast")  # both of the store's connections are now dead
        assert store.totals()["stored_trades"] == 1
        assert store.has_instrument("ex", "BTC-USDT")
        store.write([TradeBatch.from_trades([trade(2, T0 + 1)])])
        assert store.totals()["stored_trades"] == 2
    finally:
        store.close()


def test_a_read_over_its_budget_is_cancelled_by_the_server(store: PostgresStore) -> None:
    with pytest.raises(OverBudget, match="over the time budget"), store.read_budget(0.2):
        store.query("SELECT pg_sleep(30)")
    assert store.query("SELECT 1") == [(1,)]  # the connection is back, outside any budget
