"""The PostgreSQL store against a real server: round trips, upserts that never overwrite a newer
revision, de-duplication of replayed trades, migrations, and a server restart mid-stream."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import msgspec
import psycopg
import pyarrow as pa
import pytest

from stores.rows import T0, M, S, approx, candle, engine_candles, random_trades, trade
from tickpipe.records import (
    TRADE_SCHEMA,
    Candle,
    PipelineMetric,
    RollingStat,
    Trade,
    TradeBatch,
)
from tickpipe.stores.base import StoreError
from tickpipe.stores.duckdb import DuckDBStore
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


def stored_candle(store: PostgresStore, start: int) -> Candle:
    (c,) = store.candles("ex", "BTC-USDT", "1m", start, start + 1)
    return c


# -- round trips -----------------------------------------------------------------------------


def test_trades_round_trip_with_every_column(store: PostgresStore) -> None:
    trades = [
        trade(1, T0, price=100.5, size=0.25, side="buy"),
        trade(2, T0 + 5, price=99.75, size=2.0, side="sell", trade_id="abc-2"),
        trade(3, T0 + 9, exchange="other", symbol="ETH-USDT", raw="ETH/USDT", side="unknown"),
    ]
    store.write([TradeBatch.from_trades(trades)])
    expected = sorted((as_row(t) for t in trades), key=lambda r: (r[1], r[2], r[5]))
    assert stored_trades(store) == expected


def test_trades_of_a_batch_without_text_ids_get_their_seq_as_id(store: PostgresStore) -> None:
    batch = TradeBatch.from_trades([trade(41, T0), trade(42, T0 + 1)])
    batch.trade_id = None  # numeric exchange: ids are the decimal form of seq
    store.write([batch])
    assert [r[4] for r in stored_trades(store)] == ["41", "42"]


def test_trades_given_as_arrow_tables_keep_their_own_sources(store: PostgresStore) -> None:
    first = TradeBatch.from_trades([trade(1, T0, source="feed-a"), trade(2, T0 + 1)])
    second = [trade(3, T0 + 2, source="feed-b"), trade(4, T0 + 3, source="feed-c")]
    # Dictionary-encoded text (as batches convert), then plain text (as databases return).
    rows = [msgspec.structs.asdict(t) for t in second]
    store.write([first.to_arrow(), pa.Table.from_pylist(rows, schema=TRADE_SCHEMA)])
    assert [r[0] for r in stored_trades(store)] == ["feed-a", "feed-a", "feed-b", "feed-c"]
    assert [r[4] for r in stored_trades(store)] == ["1", "2", "3", "4"]


def test_candles_round_trip(store: PostgresStore) -> None:
    written = [candle(T0), candle(T0 + M, final=True, revision=2, trades=7, close=1.75)]
    store.write(candles=written)
    assert store.candles("ex", "BTC-USDT", "1m") == written
    assert store.intervals() == ["1m"]


def test_rolling_stats_metrics_and_events_round_trip(store: PostgresStore) -> None:
    stat = RollingStat(exchange="ex", symbol="BTC-USDT", ts=T0, avg_close_30m=1.5,
                       min_price_5m=1.0, max_price_5m=2.0, avg_price_5m=1.4)  # fmt: skip
    metric = PipelineMetric(ts=T0, process="p1", period_s=5.0, trades=500, trades_per_s=100.0,
                            candles=12, lag_p50_ms=3.5, lag_p99_ms=40.0, queue_depth=7)  # fmt: skip
    store.write(rolling=[stat], metrics=[metric], events=[(T0, "gap", "feed", '{"x":1}')])
    assert store.rolling_history("ex", "BTC-USDT", 10) == [
        {"exchange": "ex", "symbol": "BTC-USDT", "ts": T0, "avg_close_30m": 1.5,
         "min_price_5m": 1.0, "max_price_5m": 2.0, "avg_price_5m": 1.4}
    ]  # fmt: skip
    assert store.query("SELECT * FROM pipeline_metrics") == [
        (T0, "p1", 5.0, 500, 100.0, 12, 3.5, 40.0, 7)
    ]
    assert store.totals()["events"] == {"gap": 1}
    store.write(metrics=[msgspec.structs.replace(metric, trades=600)])
    assert store.query("SELECT trades FROM pipeline_metrics") == [(600,)]


# -- trades: replays store nothing twice ------------------------------------------------------


def test_a_replayed_flush_stores_each_trade_once(store: PostgresStore) -> None:
    first = [trade(i, T0 + i) for i in range(100)]
    store.write([TradeBatch.from_trades(first)])
    # A replay after a crash: the same trades again, overlapping with new ones.
    replay = [trade(i, T0 + i) for i in range(50, 150)]
    store.write([TradeBatch.from_trades(replay)])
    rows = stored_trades(store)
    assert [r[5] for r in rows] == list(range(150))


def test_a_replayed_event_is_stored_once(store: PostgresStore) -> None:
    gap = (T0, "gap", "feed", '{"first_missing": 5}' + " " * 5000)
    store.write(events=[gap, (T0, "gap", "feed", '{"first_missing": 9}')])
    store.write(events=[gap, gap])
    assert store.totals()["events"] == {"gap": 2}


def test_duplicates_inside_one_write_are_stored_once(store: PostgresStore) -> None:
    batch = TradeBatch.from_trades([trade(1, T0), trade(2, T0 + 1)])
    store.write([batch, batch, TradeBatch.from_trades([trade(1, T0)])])
    assert [r[5] for r in stored_trades(store)] == [1, 2]


def test_the_same_trade_id_on_another_symbol_or_exchange_is_another_trade(
    store: PostgresStore,
) -> None:
    trades = [trade(1, T0), trade(1, T0, symbol="ETH-USDT"), trade(1, T0, exchange="other")]
    store.write([TradeBatch.from_trades(trades)])
    assert len(stored_trades(store)) == 3


# -- candles: whole-row upserts that never overwrite a newer revision --------------------------


def test_a_later_provisional_update_replaces_the_whole_row(store: PostgresStore) -> None:
    store.write(candles=[candle(T0, trades=3, close=1.5)])
    later = candle(T0, trades=9, close=1.9, high=2.5, volume=8.0, last_seq=30, updated_at=T0 + 9)
    store.write(candles=[later])
    assert stored_candle(store, T0) == later


def test_a_final_candle_replaces_its_provisional_row(store: PostgresStore) -> None:
    store.write(candles=[candle(T0)])
    final = candle(T0, final=True, trades=4, updated_at=T0 + 70 * S)
    store.write(candles=[final])
    assert stored_candle(store, T0) == final


def test_a_stale_provisional_update_never_overwrites_the_final_candle(
    store: PostgresStore,
) -> None:
    final = candle(T0, final=True, trades=4)
    store.write(candles=[final])
    store.write(candles=[candle(T0, final=False, trades=2, updated_at=T0 + 99 * S)])
    assert stored_candle(store, T0) == final


def test_an_older_revision_never_overwrites_a_newer_one(store: PostgresStore) -> None:
    corrected = candle(T0, final=True, revision=2, trades=6, close=1.1)
    store.write(candles=[corrected])
    for older in (candle(T0, final=True, revision=1, trades=5),
                  candle(T0, final=True, revision=0, trades=4),
                  candle(T0, final=False, revision=1, trades=9)):  # fmt: skip
        store.write(candles=[older])
    assert stored_candle(store, T0) == corrected


def test_a_correction_replaces_the_final_candle(store: PostgresStore) -> None:
    store.write(candles=[candle(T0, final=True, trades=4)])
    corrected = candle(T0, final=True, revision=1, trades=5, low=0.25)
    store.write(candles=[corrected])
    assert stored_candle(store, T0) == corrected
    assert store.revisions(T0) == {("ex", "BTC-USDT", "1m", T0): 1}
    assert store.finals(T0) == {("ex", "BTC-USDT", "1m", T0)}


def test_replaying_the_same_final_candle_converges(store: PostgresStore) -> None:
    final = candle(T0, final=True, revision=1)
    store.write(candles=[final])
    store.write(candles=[final])
    assert store.query("SELECT count(*) FROM candles") == [(1,)]
    assert stored_candle(store, T0) == final


def test_the_last_update_of_a_candle_in_one_write_wins(store: PostgresStore) -> None:
    store.write(candles=[candle(T0, trades=1), candle(T0, trades=2), candle(T0, trades=3)])
    assert stored_candle(store, T0).trades == 3


# -- all or nothing ---------------------------------------------------------------------------


def test_a_write_failing_midway_leaves_nothing_of_it(store: PostgresStore) -> None:
    bad = candle(T0, exchange=None)  # violates NOT NULL after the trades went in
    with pytest.raises(psycopg.Error):
        store.write([TradeBatch.from_trades([trade(1, T0)])], candles=[bad])
    assert stored_trades(store) == []
    store.write([TradeBatch.from_trades([trade(2, T0)])])  # the store still works
    assert [r[5] for r in stored_trades(store)] == [2]


# -- re-bucketing and the reads match DuckDB ----------------------------------------------------


def test_rebucketed_1s_candles_equal_the_engine_at_that_size(store: PostgresStore) -> None:
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


def test_every_read_answers_as_duckdb_does(store: PostgresStore, tmp_path: Path) -> None:
    trades = random_trades(300) + [
        trade(10_000 + i, T0 + i * 7 * S, exchange="beta", symbol=s, price=10.0 + i, size=0.5,
              side="sell")
        for i, s in enumerate(["BTC-USDT", "XRP-USDT", "XRP-USDT", "BTC-USDT"])
    ]  # fmt: skip
    # Two trades at the same instant: the tie is broken by seq in both stores.
    trades.append(trade(20_000, trades[10].ts, price=55.5))
    candles = engine_candles([t for t in trades if t.exchange == "ex"], "1s")
    duck = DuckDBStore(tmp_path / "t.duckdb")
    try:
        for s in (store, duck):
            s.write(
                [TradeBatch.from_trades(trades)],
                candles=candles,
                events=[(T0, "gap", "feed", "{}"), (T0 + 1, "disconnect", "feed", "{}")],
            )
        end = trades[-1].ts + 1
        for call in (
            lambda s: s.intervals(),
            lambda s: s.instrument_summary(),
            lambda s: s.recent_trades("ex", "BTC-USDT", 25),
            lambda s: s.totals(),
            lambda s: s.top_exchanges(T0, end, "trades", 10),
            lambda s: s.top_exchanges(T0, end, "volume", 1),
            lambda s: s.top_tickers(T0, end, "trades", 10),
            lambda s: s.top_tickers(T0, end, "volume", 10),
            lambda s: s.exchange_breakdown("beta", T0, end),
            lambda s: s.has_instrument("ex", "BTC-USDT"),
            lambda s: s.has_instrument("ex", "NOPE-USDT"),
            lambda s: s.candles("ex", "BTC-USDT", "1s", T0, T0 + 5 * M, 5 * S, S),
        ):
            assert approx(call(store)) == approx(call(duck))
    finally:
        duck.close()


# -- restart -----------------------------------------------------------------------------------


def test_restore_returns_each_trade_from_the_cutoff_once_in_time_order(
    store: PostgresStore,
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


def test_restore_of_an_empty_store_is_empty(store: PostgresStore) -> None:
    assert store.restore_cutoff(M, 0, M) == {}
    assert list(store.restore_batches({})) == []


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
        while len(written) < 10:
            time.sleep(0.01)
        postgres_server.stop("fast")
        time.sleep(1.0)  # writes fail and retry while the server is down
        during = len(written)
        postgres_server.start()
        time.sleep(0.5)
        stop.set()
        thread.join(60)
    finally:
        stop.set()
        thread.join(60)
    try:
        assert errors == []
        assert during < len(written)  # the writer went on after the restart
        batches = len(written)
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
