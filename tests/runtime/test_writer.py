"""The store writer's `after_write` hooks: handed what each flush committed, after the commit
(the Parquet lake follows the store through them)."""

from __future__ import annotations

import threading
from pathlib import Path

from stores.rows import T0, candle, trade

from tickpipe.records import Candle, TradeBatch
from tickpipe.runtime.writer import StoreWriter
from tickpipe.stores.duckdb import DuckDBStore


def test_after_write_hooks_get_each_flush_once_it_is_in_the_store(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "t.duckdb")
    writer = StoreWriter(store, flush_every=60.0)
    seen: list[tuple[int, list[Candle], int]] = []

    def hook(trades: list[TradeBatch], candles: list[Candle]) -> None:
        # Called on the writer thread after the write: the store holds the trades already.
        (stored,) = store.query("SELECT count(*) FROM trades")[0]
        seen.append((sum(len(t) for t in trades), candles, stored))

    writer.after_write.append(hook)
    try:
        writer.submit(TradeBatch.from_trades([trade(1, T0), trade(2, T0 + 1)]), [candle(T0)])
        assert writer.flush(timeout=30)
        writer.submit(TradeBatch.from_trades([trade(3, T0 + 2)]))
        assert writer.flush(timeout=30)
    finally:
        writer.close()
        store.close()

    assert [(n, [c.start for c in cs], stored) for n, cs, stored in seen] == [
        (2, [T0], 2),
        (1, [], 3),
    ]


def test_flush_soon_writes_what_is_pending_without_waiting_for_the_cadence(
    tmp_path: Path,
) -> None:
    store = DuckDBStore(tmp_path / "t.duckdb")
    writer = StoreWriter(store, flush_every=3600.0)  # the cadence never comes in this test
    try:
        writer.flush_soon()  # nothing pending: no empty write
        writer.submit(TradeBatch.from_trades([trade(1, T0), trade(2, T0 + 1)]))
        assert writer.durable == 0
        written = threading.Event()
        writer.after_write.append(lambda trades, candles: written.set())
        writer.flush_soon()
        assert written.wait(60)
        assert store.query("SELECT count(*) FROM trades") == [(2,)]
    finally:
        writer.close()
        store.close()


def test_consumed_offsets_are_stored_with_the_trades_handed_over_before_them(postgres_dsn):
    from tickpipe.stores.flush import StreamOffsets
    from tickpipe.stores.postgresql import PostgresStore

    store = PostgresStore(postgres_dsn)
    store.stream_offsets("g", "t", [0, 1, 2])  # the processor's claim on assignment
    writer = StoreWriter(store, flush_every=3600)
    try:
        with writer.atomic():
            writer.submit(TradeBatch.from_trades([trade(1, T0), trade(2, T0 + 1)]))
            writer.submit_offsets(StreamOffsets("g", "t", {0: (5, "a"), 1: (2, "a")}))
        writer.submit(TradeBatch.from_trades([trade(3, T0 + 2)]))
        writer.submit_offsets(StreamOffsets("g", "t", {0: (6, "b"), 2: (9, "b")}))
        writer.forget_offsets({2})  # given away: not stored from here
        assert writer.flush(timeout=30)
        assert store.stream_offsets("g", "t", [0, 1, 2]) == {0: (6, "b"), 1: (2, "a")}
        assert [r[0] for r in store.query("SELECT trade_id FROM trades ORDER BY ts")] == [
            "1",
            "2",
            "3",
        ]
    finally:
        writer.close()
        store.close()
