"""What only the DuckDB store does: its file and read-only mode, the conversion of a flush's
batches, all-or-nothing writes. What every store must do is the contract suite's
(tests/stores/contract/)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import duckdb
import msgspec
import numpy as np
import pytest

from stores.rows import T0, M, candle, trade
from tickpipe.records import Candle, Trade, TradeBatch
from tickpipe.stores import duckdb as duckdb_store
from tickpipe.stores.duckdb import DuckDBStore, StoreError


@pytest.fixture
def store(tmp_path: Path):
    s = DuckDBStore(tmp_path / "data" / "tickpipe.duckdb")
    yield s
    s.close()


def stored_trades(store: DuckDBStore) -> list[tuple]:
    return store.query(
        "SELECT source, exchange, symbol, raw_symbol, trade_id, seq, price, size, side, ts, "
        "recv_ts FROM trades ORDER BY exchange, symbol, seq"
    )


def as_row(t: Trade) -> tuple:
    return (t.source, t.exchange, t.symbol, t.raw_symbol, t.trade_id, t.seq, t.price, t.size,
            t.side, t.ts, t.recv_ts)  # fmt: skip


def test_a_new_store_creates_its_directory_and_tables(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "tickpipe.duckdb"
    store = DuckDBStore(path)
    assert path.exists()
    assert store.query("SELECT count(*) FROM trades") == [(0,)]
    assert store.intervals() == []
    store.close()


def test_opening_missing_data_read_only_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no tickpipe data at .*nothing\.duckdb"):
        DuckDBStore(tmp_path / "nothing.duckdb", read_only=True)
    assert not (tmp_path / "nothing.duckdb").exists()


def test_many_batches_of_one_flush_keep_each_trade_its_own_source_and_id_form(
    store: DuckDBStore,
) -> None:
    # The store joins a flush's batches before converting them: nothing may leak between them.
    numeric = TradeBatch.from_trades([trade(i, T0 + i, source="binance") for i in (1, 2)])
    numeric.trade_id = None
    texts = TradeBatch.from_trades(
        [trade(3, T0 + 3, source="coinbase", exchange="cb", trade_id="c-3", symbol="ETH-USD")]
    )
    more = TradeBatch.from_trades([trade(4, T0 + 4, source="binance", exchange="bn")])
    store.write(trades=[numeric, texts, more])
    assert store.query(
        "SELECT source, exchange, symbol, trade_id FROM trades ORDER BY seq"
    ) == [("binance", "ex", "BTC-USDT", "1"), ("binance", "ex", "BTC-USDT", "2"),
          ("coinbase", "cb", "ETH-USD", "c-3"), ("binance", "bn", "BTC-USDT", "4")]  # fmt: skip


def test_a_failed_write_leaves_nothing_half_written(store: DuckDBStore) -> None:
    store.write(trades=[TradeBatch.from_trades([trade(1, T0)])], candles=[candle(T0)])
    before_trades, before_candles = stored_trades(store), store.candles("ex", "BTC-USDT", "1m")
    with pytest.raises(duckdb.Error):
        store.write(
            trades=[TradeBatch.from_trades([trade(2, T0 + 1), trade(3, T0 + 2)])],
            candles=[candle(T0, trades=99), candle(T0 + M)],
            events=[(T0, "gap", "feed")],  # one field short: fails after the inserts
        )
    assert stored_trades(store) == before_trades
    assert store.candles("ex", "BTC-USDT", "1m") == before_candles
    assert store.query("SELECT count(*) FROM events") == [(0,)]
    # The store still works after the rollback.
    store.write(trades=[TradeBatch.from_trades([trade(2, T0 + 1)])], candles=[candle(T0 + M)])
    assert len(stored_trades(store)) == 2
    assert len(store.candles("ex", "BTC-USDT", "1m")) == 2


def test_a_candle_violating_the_schema_rolls_back_the_trades_of_its_write(
    store: DuckDBStore,
) -> None:
    bad = candle(T0)
    bad.close = None  # type: ignore[assignment]  # NOT NULL
    with pytest.raises(duckdb.Error):
        store.write(trades=[TradeBatch.from_trades([trade(1, T0)])], candles=[bad])
    assert stored_trades(store) == []
    assert store.query("SELECT count(*) FROM candles") == [(0,)]


def test_nothing_half_written_after_a_crash_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "tickpipe.duckdb"
    store = DuckDBStore(path)
    store.write(trades=[TradeBatch.from_trades([trade(1, T0)])])
    with pytest.raises(duckdb.Error):
        store.write(trades=[TradeBatch.from_trades([trade(2, T0)])], events=[("x",)])
    store.close()
    reopened = DuckDBStore(path, read_only=True)
    assert reopened.query("SELECT seq FROM trades") == [(1,)]
    reopened.close()


def test_candle_records_survive_msgspec_round_trip(store: DuckDBStore) -> None:
    c = candle(T0, final=True, revision=3)
    store.write(candles=[msgspec.json.decode(msgspec.json.encode(c), type=Candle)])
    assert store.candles("ex", "BTC-USDT", "1m") == [c]


def batch_of(first: int, n: int) -> TradeBatch:
    return TradeBatch.from_trades([trade(i, T0 + i) for i in range(first, first + n)])


def test_the_writer_reopens_the_file_after_many_trades_and_keeps_every_one(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tickpipe.stores.duckdb.REOPEN_ROWS", 100)
    store.query("SELECT 1")  # an idle read cursor, which the reopen closes
    memory_limit = store.query("SELECT current_setting('memory_limit')")
    for k in range(5):
        store.write([batch_of(k * 60, 60)], [candle(T0 + k * M, trades=60)])
    assert store.reopens == 2  # after 120 and after 240 trades: 300 in all
    assert store.query("SELECT count(*), count(DISTINCT seq) FROM trades") == [(300, 300)]
    assert store.query("SELECT count(*) FROM candles") == [(5,)]
    assert store.query("SELECT current_setting('memory_limit')") == memory_limit


def test_a_running_read_postpones_the_reopen_and_is_read_to_its_end(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.write([batch_of(0, 500)], [])
    monkeypatch.setattr("tickpipe.stores.duckdb.REOPEN_ROWS", 100)
    reading = store.trade_batches(rows=50)
    first = next(reading)  # the read holds its cursor until it is drained
    store.write([batch_of(500, 200)], [])
    assert store.reopens == 0
    rest = [t for b in reading for t in b.to_trades()]
    assert len(first) + len(rest) in (500, 700)  # as of its snapshot, never cut short
    store.write([batch_of(700, 10)], [])
    assert store.reopens == 1
    assert store.query("SELECT count(*) FROM trades") == [(710,)]


def test_a_file_another_process_holds_at_the_reopen_is_one_line_after_waiting(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tickpipe.stores.duckdb.REOPEN_ROWS", 10)
    monkeypatch.setattr("tickpipe.stores.duckdb.REOPEN_WAIT_S", 0.3)

    def taken(path: str, **_: object) -> duckdb.DuckDBPyConnection:
        raise duckdb.IOException(f'IO Error: Could not set lock on file "{path}": Conflicting lock')

    monkeypatch.setattr("tickpipe.stores.duckdb.duckdb.connect", taken)
    with pytest.raises(StoreError, match=r"cannot reopen .*tickpipe\.duckdb: IO Error: Could not"):
        store.write([batch_of(0, 20)], [])


@pytest.mark.parametrize("layout", ["text rows", "coded rows"])
def test_a_restore_of_more_trades_than_the_memory_limit_sorts_at_once_reads_them_in_order(
    tmp_path: Path, layout: str
) -> None:
    # 1M trades of 10 instruments within the horizon: one sort of them all does not fit 32MB,
    # in either layout (files written before the coded one hold text rows).
    path = tmp_path / "tickpipe.duckdb"
    DuckDBStore(path).close()
    n, t_end = 1_000_000, T0 + 3_000 * 1_000_000
    ts = "$end - (($n - i) * 7919 % $n) * 3000"
    con = duckdb.connect(str(path))
    if layout == "text rows":
        con.execute(
            "INSERT INTO trade_rows SELECT 'x', 'x', 'S' || (i % 10), 'S' || (i % 10), NULL, i, "
            f"100.0, 1.0, 'buy', {ts}, 0 FROM range($n) t(i)",
            {"end": t_end, "n": n},
        )
    else:
        con.execute(
            "INSERT INTO trade_instruments "
            "SELECT i, 'x', 'x', 'S' || i, 'S' || i FROM range(10) t(i)"
        )
        con.execute(
            f"INSERT INTO coded_trade_rows SELECT i % 10, NULL, i, 100.0, 1.0, 1, {ts}, 0 "
            "FROM range($n) t(i)",
            {"end": t_end, "n": n},
        )
    con.close()
    store = DuckDBStore(path, memory_limit="32MB")
    try:
        cutoff = {("x", f"S{k}"): T0 for k in range(10)}
        restored = list(store.restore_batches(cutoff))
    finally:
        store.close()
    ts = np.concatenate([b.ts for b in restored])
    assert len(ts) == n and len(np.unique(np.concatenate([b.seq for b in restored]))) == n
    assert (np.diff(ts) >= 0).all()


def some_trades(seqs: list[int], symbols: list[str], source: str = "binance") -> list[Trade]:
    sides = ["buy", "sell", "unknown"]
    return [trade(s, T0 + s, source=source, symbol=sym, side=sides[s % 3])
            for s, sym in zip(seqs, symbols, strict=True)]  # fmt: skip


def test_batches_read_back_as_the_rows_they_hold_across_reopens_and_old_text_rows(
    tmp_path: Path,
) -> None:
    # Batches are stored with instrument and side codes; the `trades` view must spell out
    # exactly the rows given, beside text rows of a file written before the coded layout,
    # and a reopened store must go on with the codes it stored (none repeated or reused).
    path = tmp_path / "tickpipe.duckdb"
    first = some_trades([1, 2, 3], ["BTC-USDT", "ETH-USDT", "BTC-USDT"])
    other_source = some_trades([4], ["BTC-USDT"], source="replay")
    store = DuckDBStore(path)
    store.write(trades=[TradeBatch.from_trades(first), TradeBatch.from_trades(other_source)])
    old = trade(9, T0 + 9, source="old", symbol="XRP-USDT", side="sell")
    store.query(
        "INSERT INTO trade_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(as_row(old))
    )
    store.close()
    store = DuckDBStore(path)
    second = some_trades([5, 6], ["SOL-USDT", "ETH-USDT"])
    numeric = TradeBatch.from_trades(second)
    numeric.trade_id = None  # numeric ids: stored as NULL, spelled out by the view
    store.write(trades=[numeric])
    expected = [as_row(t) for t in [*first, *other_source, *second]]
    assert sorted(stored_trades(store)) == sorted([*expected, as_row(old)])
    codes = store.query(
        "SELECT source, exchange, symbol, raw_symbol, count(*) FROM trade_instruments "
        "GROUP BY ALL HAVING count(*) > 1"
    )
    assert codes == []
    assert store.query("SELECT count(*) FROM trade_instruments") == [(4,)]
    store.close()


def test_a_failed_write_keeps_no_instrument_code_and_the_next_write_stores_it(
    store: DuckDBStore,
) -> None:
    new = some_trades([1], ["ADA-USDT"])
    with pytest.raises(duckdb.Error):
        store.write(trades=[TradeBatch.from_trades(new)], events=[("x",)])
    assert store.query("SELECT count(*) FROM trade_instruments") == [(0,)]
    store.write(trades=[TradeBatch.from_trades(new)])
    assert stored_trades(store) == [as_row(t) for t in new]


def test_retention_drops_old_trades_of_both_layouts(store: DuckDBStore) -> None:
    store.write(trades=[TradeBatch.from_trades(some_trades([1, 2, 100], ["BTC-USDT"] * 3))])
    old = trade(3, T0 + 3, source="old")
    store.query(
        "INSERT INTO trade_rows VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", list(as_row(old))
    )
    dropped, _ = store.drop_before(T0 + 50, {})
    assert dropped == 3
    assert [r[5] for r in stored_trades(store)] == [100]


def test_a_flush_stopped_by_the_memory_limit_waits_for_memory_and_is_stored_whole(
    tmp_path: Path,
) -> None:
    # The API's reads share DuckDB's memory limit with the writer; memory they hold for a
    # while must delay a flush, not lose it. Here the limit itself is too small at first and
    # is raised (as a read ending gives memory back) once the flush has waited.
    store = DuckDBStore(tmp_path / "tickpipe.duckdb", memory_limit="1MB")
    candles = [candle(T0 + i * M, symbol=f"S{i % 500}") for i in range(20_000)]

    def give_memory_back() -> None:
        while store.memory_waits == 0:
            time.sleep(0.01)
        store.query("SET memory_limit = '256MB'")

    helper = threading.Thread(target=give_memory_back, daemon=True)
    helper.start()
    try:
        store.write(trades=[batch_of(1, 1_000)], candles=candles)
        helper.join(timeout=5)
        assert store.memory_waits >= 1
        assert store.query("SELECT count(*) FROM candles") == [(len(candles),)]
        assert store.query("SELECT count(*) FROM trades") == [(1_000,)]
    finally:
        store.close()


# How DuckDB reported a COMMIT stopped by its memory limit in a CI run of the soak test.
COMMIT_OUT_OF_MEMORY = "failed to allocate data of size 512 bytes (45.7 MiB/45.7 MiB used)"


class _FailingCommits:
    """A store's connection whose first `times` COMMITs fail as DuckDB's do: the transaction
    rolled back whole, then a TransactionException saying `why`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, why: str, times: int) -> None:
        self._con, self.why, self.times = con, why, times
        self.failed = 0
        # The store's statements read its Arrow tables by name from the calling frame, which
        # is now this one's: DuckDB must look one frame further.
        con.execute("SET python_scan_all_frames = true")

    def execute(self, sql: str, *args: object) -> object:
        if sql == "COMMIT" and self.failed < self.times:
            self.failed += 1
            self._con.execute("ROLLBACK")
            raise duckdb.TransactionException(
                f"TransactionContext Error: Failed to commit: {self.why}"
            )
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


def failing_commits(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch, why: str, times: int = 1
) -> _FailingCommits:
    failing = _FailingCommits(store._con, why, times)  # noqa: SLF001 (wrapped, not changed)
    monkeypatch.setattr(store, "_con", failing)
    return failing


def test_a_commit_stopped_by_the_memory_limit_is_run_again_and_stores_the_flush_once(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = failing_commits(store, monkeypatch, COMMIT_OUT_OF_MEMORY, times=2)
    store.write(trades=[batch_of(1, 1_000)], candles=[candle(T0), candle(T0 + M)])
    assert failing.failed == 2 and store.memory_waits == 2
    trades = store.query("SELECT count(*), count(DISTINCT seq) FROM trades")
    assert trades == [(1_000, 1_000)]
    assert store.query("SELECT count(*) FROM candles") == [(2,)]


def test_a_commit_error_that_is_not_about_memory_is_raised_at_once(
    store: DuckDBStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing_commits(store, monkeypatch, "could not write file: No space left on device")
    with pytest.raises(duckdb.TransactionException, match="No space left"):
        store.write(trades=[batch_of(1, 10)])
    assert store.memory_waits == 0
    assert store.query("SELECT count(*) FROM trades") == [(0,)]


def test_a_flush_that_never_gets_the_memory_fails_after_waiting_and_stores_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(duckdb_store, "WRITE_MEMORY_WAIT_S", 0.3)
    store = DuckDBStore(tmp_path / "tickpipe.duckdb", memory_limit="1MB")
    try:
        with pytest.raises(duckdb.OutOfMemoryException):
            store.write(
                trades=[batch_of(1, 1_000)],
                candles=[candle(T0 + i * M, symbol=f"S{i % 500}") for i in range(20_000)],
            )
        assert store.memory_waits >= 1
        store.query("SET memory_limit = '256MB'")
        assert store.query("SELECT count(*) FROM trades") == [(0,)]
        assert store.query("SELECT count(*) FROM candles") == [(0,)]
    finally:
        store.close()
