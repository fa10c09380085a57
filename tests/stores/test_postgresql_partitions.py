"""The PostgreSQL store's trades table partitioned by day (migration 4): a database of an older
schema upgrades with its trades intact, retention drops whole day partitions, a flush of new
trades takes the plain COPY and a replay the conflict-checked way, and a partition dropped by
another process's retention is made again."""

from __future__ import annotations

import psycopg
import pytest

from stores.rows import T0, trade
from tickpipe.records import TradeBatch
from tickpipe.stores import postgresql as pgs
from tickpipe.stores.postgresql import DAY_US, PostgresStore

DAY0 = T0 - T0 % DAY_US  # midnight UTC before T0


def _day_trades(days: int, per_day: int) -> list:
    """`per_day` trades every day over `days` days from DAY0, ids unique."""
    step = DAY_US // per_day
    return [trade(d * per_day + i, DAY0 + d * DAY_US + i * step)
            for d in range(days) for i in range(per_day)]  # fmt: skip


def _rows(store: PostgresStore) -> list[tuple]:
    return store.query("SELECT exchange, symbol, trade_id, ts, price FROM trades ORDER BY ts")


def _as_rows(trades: list) -> list[tuple]:
    return sorted(((t.exchange, t.symbol, t.trade_id, t.ts, t.price) for t in trades),
                  key=lambda r: r[3])  # fmt: skip


def _partitions(store: PostgresStore) -> list[str]:
    return sorted(r[0] for r in store.query(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'trades'::regclass"))  # fmt: skip


@pytest.fixture
def store(postgres_dsn: str):
    s = PostgresStore(postgres_dsn)
    yield s
    s.close()


def test_a_version_3_database_upgrades_with_its_trades_partitioned_and_still_unique(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = [m for m in pgs.MIGRATIONS if m[0] <= 3]
    monkeypatch.setattr(pgs, "MIGRATIONS", older)
    PostgresStore(postgres_dsn).close()
    trades = _day_trades(3, 4)
    with psycopg.connect(postgres_dsn, autocommit=True) as con, con.cursor() as cur:
        cur.executemany(
            "INSERT INTO trades VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [(t.source, t.exchange, t.symbol, t.raw_symbol, t.trade_id, t.seq, t.price, t.size,
              t.side, t.ts, t.recv_ts) for t in trades],
        )  # fmt: skip
    monkeypatch.undo()

    store = PostgresStore(postgres_dsn)
    try:
        assert store.query("SELECT max(version) FROM schema_version") == [(pgs.MIGRATIONS[-1][0],)]
        assert store.query("SELECT relkind FROM pg_class WHERE relname = 'trades'") == [("p",)]
        assert len(_partitions(store)) == 3  # one a day
        assert _rows(store) == _as_rows(trades)
        indexes = {r[0] for r in store.query(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'trades'")}  # fmt: skip
        assert indexes == {"trades_key", "trades_time"}
        store.write([TradeBatch.from_trades([*trades[:5], trade(99, DAY0 + 5)])])
        assert _rows(store) == _as_rows([*trades, trade(99, DAY0 + 5)])
    finally:
        store.close()


def test_retention_drops_whole_day_partitions_and_cuts_only_the_day_of_the_cutoff(
    store: PostgresStore,
) -> None:
    trades = _day_trades(5, 6)
    store.write([TradeBatch.from_trades(trades)])
    assert len(_partitions(store)) == 5
    cut = DAY0 + 2 * DAY_US + DAY_US // 2  # the middle of the third day
    dropped, _ = store.drop_before(cut, {})
    assert dropped == sum(t.ts < cut for t in trades)
    assert len(_partitions(store)) == 3  # days 1 and 2 dropped whole
    assert _rows(store) == _as_rows([t for t in trades if t.ts >= cut])
    assert store.drop_before(cut, {}) == (0, 0)


def test_new_trades_take_the_plain_copy_and_a_replay_the_checked_insert(
    store: PostgresStore,
) -> None:
    first = [trade(i, T0 + i) for i in range(100)]
    store.write([TradeBatch.from_trades(first)])
    store.write([TradeBatch.from_trades([trade(i, T0 + i) for i in range(100, 150)])])
    assert store.conflicted_writes == 0
    store.write([TradeBatch.from_trades([trade(i, T0 + i) for i in range(50, 200)])])
    assert store.conflicted_writes == 1
    assert _rows(store) == _as_rows([trade(i, T0 + i) for i in range(200)])


def test_a_partition_dropped_by_another_process_is_made_again(
    store: PostgresStore, postgres_dsn: str
) -> None:
    store.write([TradeBatch.from_trades(_day_trades(2, 3))])
    other = PostgresStore(postgres_dsn)
    try:
        other.drop_before(DAY0 + 2 * DAY_US, {})
    finally:
        other.close()
    assert _partitions(store) == []
    late = [trade(500, DAY0 + 7), trade(501, DAY0 + DAY_US + 7)]
    store.write([TradeBatch.from_trades(late)])  # the store still took both days for there
    assert _rows(store) == _as_rows(late)
    assert len(_partitions(store)) == 2
