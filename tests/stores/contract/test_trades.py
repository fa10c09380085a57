"""Trades: every column kept, unique on (exchange, symbol, trade_id), and the whole history
read back in bounded chunks in the order verify and export rely on."""

from __future__ import annotations

import msgspec
import pyarrow as pa

from stores.rows import T0, trade
from tickpipe.records import TRADE_SCHEMA, Trade, TradeBatch
from tickpipe.stores.base import Store

from .conftest import StoreRow


def stored(store: Store, rows: int = 500_000) -> list[Trade]:
    return [t for b in store.trade_batches(rows) for t in b.to_trades()]


def key(t: Trade) -> tuple:
    """A stored trade without its batch's source label (`trade_batches` names its own)."""
    return msgspec.structs.astuple(msgspec.structs.replace(t, source=""))


def test_trades_round_trip_with_every_column(store: Store) -> None:
    trades = [
        trade(1, T0, price=100.5, size=0.25, side="buy"),
        trade(2, T0 + 5, price=99.75, size=2.0, side="sell", trade_id="abc-2"),
        trade(3, T0 + 9, exchange="other", symbol="ETH-USDT", raw="ETH/USDT", side="unknown"),
    ]
    store.write([TradeBatch.from_trades(trades)])
    assert sorted(map(key, stored(store))) == sorted(map(key, trades))
    recent = store.recent_trades("ex", "BTC-USDT", 10)
    assert [(r["source"], r["trade_id"], r["side"]) for r in recent] == [
        ("feed", "abc-2", "sell"), ("feed", "1", "buy"),
    ]  # fmt: skip


def test_trades_of_a_batch_without_text_ids_get_their_seq_as_id(store: Store) -> None:
    batch = TradeBatch.from_trades([trade(41, T0), trade(42, T0 + 1)])
    batch.trade_id = None  # numeric exchange: ids are the decimal form of seq
    store.write([batch])
    assert [t.trade_id for t in stored(store)] == ["41", "42"]


def test_trades_given_as_arrow_tables_keep_their_own_sources(store: Store) -> None:
    first = TradeBatch.from_trades([trade(1, T0, source="feed-a"), trade(2, T0 + 1)])  # one source
    second = [trade(3, T0 + 2, source="feed-b"), trade(4, T0 + 3, source="feed-c")]
    # Dictionary-encoded text (as batches convert), then plain text (as databases return).
    rows = [msgspec.structs.asdict(t) for t in second]
    store.write([first.to_arrow(), pa.Table.from_pylist(rows, schema=TRADE_SCHEMA)])
    recent = store.recent_trades("ex", "BTC-USDT", 10)
    assert [(r["source"], r["trade_id"]) for r in reversed(recent)] == [
        ("feed-a", "1"), ("feed-a", "2"), ("feed-b", "3"), ("feed-c", "4"),
    ]  # fmt: skip


def test_a_replayed_trade_is_stored_once_or_reported(store: Store, row: StoreRow) -> None:
    store.write([TradeBatch.from_trades([trade(i, T0 + i) for i in range(100)])])
    # A replay after a crash: the same trades again, overlapping with new ones.
    store.write([TradeBatch.from_trades([trade(i, T0 + i) for i in range(50, 150)])])
    seqs = [t.seq for t in stored(store)]
    if row.ignores_duplicate_trades:
        assert seqs == list(range(150))
        assert store.duplicate_trades() == 0
        assert store.totals()["stored_trades"] == 150
    else:  # kept unique by the engine; a store that took a copy says so, and verify fails
        assert sorted(set(seqs)) == list(range(150))
        assert store.duplicate_trades() == 50


def test_duplicates_inside_one_write_are_stored_once_or_reported(
    store: Store, row: StoreRow
) -> None:
    batch = TradeBatch.from_trades([trade(1, T0), trade(2, T0 + 1)])
    store.write([batch, batch, TradeBatch.from_trades([trade(1, T0)])])
    expected = 0 if row.ignores_duplicate_trades else 3
    assert store.duplicate_trades() == expected
    assert len(stored(store)) == 2 + expected


def test_the_same_trade_id_on_another_symbol_or_exchange_is_another_trade(store: Store) -> None:
    trades = [trade(1, T0), trade(1, T0, symbol="ETH-USDT"), trade(1, T0, exchange="other")]
    store.write([TradeBatch.from_trades(trades)])
    assert len(stored(store)) == 3
    assert store.duplicate_trades() == 0


def test_the_whole_history_reads_in_bounded_chunks_in_code_point_order(store: Store) -> None:
    # Upper before lower case and "-" before letters in code-point order, whatever the
    # database's locale would say; within an instrument by (ts, seq).
    names = [("ex", "btc-usd"), ("ex", "BTC-USDT"), ("Ex", "ZZZ"), ("ex", "BTC-EUR"), ("e", "A")]
    trades = [
        trade(100 * k + i, T0 + (7 - i) // 2, exchange=ex, symbol=sym, raw=sym)
        for k, (ex, sym) in enumerate(names)
        for i in range(8)
    ]
    store.write([TradeBatch.from_trades(trades[::2]), TradeBatch.from_trades(trades[1::2])])
    batches = list(store.trade_batches(rows=3))
    assert all(0 < len(b) <= 3 for b in batches)
    got = [(t.exchange, t.symbol, t.ts, t.seq) for b in batches for t in b.to_trades()]
    assert got == sorted((t.exchange, t.symbol, t.ts, t.seq) for t in trades)
    assert list(store.trade_batches()) != [] and stored(store, 1000) == stored(store, 2)
