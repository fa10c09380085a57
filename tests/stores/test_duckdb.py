"""The embedded DuckDB store: round trips, whole-row idempotent upserts, re-bucketing,
all-or-nothing writes and the restore point."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import msgspec
import pytest

from stores.rows import T0, M, S, candle, trade
from tickpipe.engine.candles import CandleEngine, EngineConfig
from tickpipe.engine.windows import parse_window
from tickpipe.records import Candle, Trade, TradeBatch, concat_batches
from tickpipe.stores.duckdb import DuckDBStore, StoreError

EXACT = ("open", "high", "low", "close", "trades", "first_seq", "last_seq")
APPROX = ("volume", "quote_volume", "vwap", "mean_price", "buy_volume", "sell_volume")


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


def test_trades_round_trip(store: DuckDBStore) -> None:
    trades = [
        trade(5, T0 + 1, price=101.25, size=0.5, side="buy"),
        trade(3, T0 + 2, symbol="ETH-USDT", raw="ETHUSDT", price=3.5, side="sell"),
        trade(4, T0 + 3, exchange="cb", raw="", trade_id="b7c1-9f", side="unknown"),
    ]
    store.write(trades=[TradeBatch.from_trades(trades)])
    assert stored_trades(store) == sorted(map(as_row, trades), key=lambda r: (r[1], r[2], r[5]))


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


def test_trades_from_a_batch_without_text_ids_get_their_seq_as_id(store: DuckDBStore) -> None:
    batch = TradeBatch.from_trades([trade(i, T0 + i) for i in (7, 8)])
    batch.trade_id = None  # exchanges with numeric ids
    store.write(trades=[batch])
    assert store.query("SELECT trade_id, seq FROM trades ORDER BY seq") == [("7", 7), ("8", 8)]


def test_stored_trades_read_back_as_a_batch(store: DuckDBStore) -> None:
    trades = [trade(1, T0 + 5, trade_id="x-1", side="sell"), trade(2, T0 + 6, symbol="ETH-USDT")]
    store.write(trades=[TradeBatch.from_trades(trades)])
    batch = TradeBatch.from_arrow(store.query_arrow("SELECT * FROM trades"), source="feed")
    assert sorted(batch.to_trades(), key=lambda t: t.seq) == trades


def test_candles_round_trip(store: DuckDBStore) -> None:
    candles = [candle(T0), candle(T0 + M, final=True, revision=2, trades=7),
               candle(T0, interval="5m"), candle(T0, symbol="ETH-USDT")]  # fmt: skip
    store.write(candles=candles)
    assert store.candles("ex", "BTC-USDT", "1m") == candles[:2]
    assert store.candles("ex", "BTC-USDT", "5m") == [candles[2]]
    assert store.candles("ex", "ETH-USDT", "1m") == [candles[3]]
    assert store.candles("ex", "BTC-USDT", "1m", start=T0 + 1) == [candles[1]]
    assert store.candles("ex", "BTC-USDT", "1m", end=T0 + M) == [candles[0]]
    assert store.intervals() == ["1m", "5m"]


def test_writing_the_same_candles_twice_leaves_one_row_each(store: DuckDBStore) -> None:
    candles = [candle(T0 + k * M) for k in range(3)]
    store.write(candles=candles)
    store.write(candles=candles)
    assert store.query("SELECT count(*) FROM candles") == [(3,)]
    assert store.candles("ex", "BTC-USDT", "1m") == candles


def test_a_newer_revision_replaces_the_whole_row(store: DuckDBStore) -> None:
    store.write(candles=[candle(T0), candle(T0 + M)])
    newer = candle(T0, open=9.0, high=9.5, low=0.1, close=0.2, volume=30.0, quote_volume=1.0,
                   vwap=7.0, mean_price=6.0, trades=30, buy_volume=11.0, sell_volume=12.0,
                   first_seq=1, last_seq=99, final=True, revision=1, updated_at=T0 + 5)  # fmt: skip
    store.write(candles=[newer])
    assert store.candles("ex", "BTC-USDT", "1m") == [newer, candle(T0 + M)]
    assert store.query("SELECT count(*) FROM candles") == [(2,)]


def test_the_last_update_of_a_candle_in_one_write_wins(store: DuckDBStore) -> None:
    updates = [candle(T0, trades=1), candle(T0, trades=2), candle(T0, trades=3, final=True)]
    store.write(candles=updates)
    assert store.candles("ex", "BTC-USDT", "1m") == [updates[-1]]


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


def test_events_are_stored(store: DuckDBStore) -> None:
    store.write(events=[(T0, "gap", "binance", "seq 5-9"), (T0 + 1, "disconnect", "b", "eof")])
    assert store.query("SELECT kind, detail FROM events ORDER BY ts") == [
        ("gap", "seq 5-9"), ("disconnect", "eof"),
    ]  # fmt: skip


# -- re-bucketing -------------------------------------------------------------------------


def _engine_candles(trades: list[Trade], window: str) -> list[Candle]:
    e = CandleEngine(EngineConfig(windows=(parse_window(window),), allowed_lateness=0))
    out = e.process(TradeBatch.from_trades(trades), T0)
    closing = e.tick(T0 + 3600 * S)  # the idle timer closes the last windows
    candles = {c.start: c for c in [*out.candles, *closing.candles]}
    assert all(c.final for c in candles.values())
    return [candles[k] for k in sorted(candles)]


@pytest.mark.parametrize(("bucket", "name"), [(5 * S, "5s"), (M, "1m"), (15 * S, "15s")])
def test_rebucketed_1s_candles_equal_candles_computed_at_that_size(
    store: DuckDBStore, bucket: int, name: str
) -> None:
    rng = random.Random(bucket)
    trades = [
        trade(i, T0 + rng.randrange(0, 3 * M), price=round(rng.uniform(90, 110), 2),
              size=rng.randrange(1, 100) / 7, side=rng.choice(["buy", "sell", "unknown"]))
        for i in range(400)
    ]  # fmt: skip
    small = _engine_candles(trades, "1s")
    direct = _engine_candles(trades, name)
    store.write(candles=small)
    rolled = store.candles("ex", "BTC-USDT", "1s", bucket=bucket, interval_size=S)
    assert [c.start for c in rolled] == [c.start for c in direct]
    for got, want in zip(rolled, direct, strict=True):
        assert got.interval == name
        assert (got.exchange, got.symbol) == ("ex", "BTC-USDT")
        for f in EXACT:
            assert getattr(got, f) == getattr(want, f), (got.start, f)
        for f in APPROX:
            assert getattr(got, f) == pytest.approx(getattr(want, f), rel=1e-9), (got.start, f)


def test_rebucketing_a_range_keeps_whole_buckets(store: DuckDBStore) -> None:
    store.write(candles=[candle(T0 + k * S, interval="1s", trades=1, final=k < 7)
                         for k in range(10)])  # fmt: skip
    rolled = store.candles("ex", "BTC-USDT", "1s", start=T0 + 5 * S, bucket=5 * S,
                           interval_size=S)  # fmt: skip
    assert [(c.start - T0, c.trades, c.final) for c in rolled] == [(5 * S, 5, False)]
    rolled = store.candles("ex", "BTC-USDT", "1s", bucket=5 * S, interval_size=S)
    assert [(c.start - T0, c.trades, c.final) for c in rolled] == [(0, 5, True), (5 * S, 5, False)]


def test_a_bucket_that_is_not_a_multiple_of_the_interval_is_refused(store: DuckDBStore) -> None:
    with pytest.raises(ValueError, match="multiple"):
        store.candles("ex", "BTC-USDT", "5s", bucket=7 * S, interval_size=5 * S)


# -- restore point ------------------------------------------------------------------------


def restore_point(store: DuckDBStore, horizon: int, lateness: int, align: int):
    """What a restart reloads: the cut-offs, and the stored trades from them on."""
    cutoff = store.restore_cutoff(horizon, lateness, align)
    return cutoff, concat_batches(store.restore_batches(cutoff), "restore")


def test_restore_point_returns_trades_from_the_aligned_cutoff(store: DuckDBStore) -> None:
    horizon, lateness, align = 6 * S, 2 * S, 60 * S
    btc = [trade(i, T0 + i * 700_000) for i in range(400)]  # up to T0 + 279.3 s
    eth = [trade(1000 + i, T0 + i * 400_000, symbol="ETH-USDT", raw="ETHUSDT", trade_id=f"e{i}")
           for i in range(400)]  # up to T0 + 159.6 s  # fmt: skip
    store.write(trades=[TradeBatch.from_trades(btc), TradeBatch.from_trades(eth[:200])])
    store.write(trades=[TradeBatch.from_trades(eth[200:])])
    cutoff, batch = restore_point(store, horizon, lateness, align)

    def expected_cutoff(trades: list[Trade]) -> int:
        edge = max(t.ts for t in trades) - lateness - horizon - align
        return edge - edge % align

    assert cutoff == {
        ("ex", "BTC-USDT"): expected_cutoff(btc),
        ("ex", "ETH-USDT"): expected_cutoff(eth),
    }
    assert expected_cutoff(btc) == T0 + 3 * M and expected_cutoff(eth) == T0 + M
    assert all(c % align == 0 for c in cutoff.values())
    want = [t for t in btc if t.ts >= expected_cutoff(btc)]
    want += [t for t in eth if t.ts >= expected_cutoff(eth)]
    got = batch.to_trades()
    assert sorted((t.symbol, t.trade_id, t.seq, t.ts, t.price) for t in got) == sorted(
        (t.symbol, t.trade_id, t.seq, t.ts, t.price) for t in want
    )


def test_restore_point_of_an_empty_store(store: DuckDBStore) -> None:
    cutoff, batch = restore_point(store, S, S, S)
    assert cutoff == {} and len(batch) == 0


def test_restore_point_returns_each_stored_trade_once(store: DuckDBStore) -> None:
    """One symbol reached through two feeds that spell it differently."""
    trades = [trade(1, T0, raw="BTCUSDT"), trade(2, T0 + 1, raw="btcusdt", source="other"),
              trade(3, T0 + 2, raw="BTCUSDT")]  # fmt: skip
    store.write(trades=[TradeBatch.from_trades(trades)])
    _, batch = restore_point(store, S, S, S)
    assert sorted(t.seq for t in batch.to_trades()) == [1, 2, 3]


def test_revisions_lists_corrected_candles_from_a_time_on(store: DuckDBStore) -> None:
    store.write(candles=[candle(T0, revision=2), candle(T0 + M, revision=0),
                         candle(T0 + 2 * M, revision=1, interval="5m"),
                         candle(T0 - M, revision=4)])  # fmt: skip
    assert store.revisions(T0) == {
        ("ex", "BTC-USDT", "1m", T0): 2,
        ("ex", "BTC-USDT", "5m", T0 + 2 * M): 1,
    }


def test_candle_records_survive_msgspec_round_trip(store: DuckDBStore) -> None:
    c = candle(T0, final=True, revision=3)
    store.write(candles=[msgspec.json.decode(msgspec.json.encode(c), type=Candle)])
    assert store.candles("ex", "BTC-USDT", "1m") == [c]
