"""`--gaps` finds holes: jumps in consecutive ids, or the time around a disconnect where ids
say nothing; only inside the range asked for, merged per instrument."""

from __future__ import annotations

import msgspec

from tickpipe.history.backfill import Task
from tickpipe.history.gaps import find_gaps
from tickpipe.records import Disconnect, Gap, Trade, TradeBatch
from tickpipe.stores.duckdb import DuckDBStore

S = 1_000_000


def trades(exchange: str, symbol: str, ids_ts: list[tuple[int, int]]) -> TradeBatch:
    return TradeBatch.from_trades([
        Trade(source=exchange, exchange=exchange, symbol=symbol, trade_id=str(i), seq=i,
              price=10.0, size=1.0, ts=ts, recv_ts=ts)
        for i, ts in ids_ts
    ])  # fmt: skip


def test_id_jumps_are_holes_and_a_range_limits_them(tmp_path):
    store = DuckDBStore(tmp_path / "t.duckdb")
    store.write(trades=[
        trades("binance", "BTC-USDT", [(1, 10 * S), (2, 11 * S), (5, 20 * S), (6, 21 * S),
                                       (9, 40 * S)]),
        trades("okx", "ETH-USDT", [(100, 5 * S), (101, 6 * S), (102, 7 * S)]),  # none
    ])  # fmt: skip
    assert find_gaps(store) == [
        Task("binance", "BTC-USDT", 11 * S, 20 * S + 1),
        Task("binance", "BTC-USDT", 21 * S, 40 * S + 1),
    ]
    assert find_gaps(store, ["okx"]) == []
    assert find_gaps(store, since=15 * S) == [Task("binance", "BTC-USDT", 21 * S, 40 * S + 1)]
    store.close()


def test_without_consecutive_ids_a_disconnect_marks_the_hole(tmp_path):
    store = DuckDBStore(tmp_path / "t.duckdb")
    # Bitstamp ids are global across pairs: they skip without anything lost.
    store.write(trades=[trades("bitstamp", "BTC-USD", [(7, 10 * S), (19, 12 * S), (40, 30 * S),
                                                       (41, 31 * S)])])  # fmt: skip
    event = Disconnect(source="bitstamp", ts=15 * S, reason="dropped")
    other = Disconnect(source="kraken", ts=15 * S, reason="dropped")
    store.write(events=[(e.ts, "disconnect", e.source, msgspec.json.encode(e).decode())
                        for e in (event, other)])  # fmt: skip
    assert find_gaps(store) == [Task("bitstamp", "BTC-USD", 12 * S, 30 * S + 1)]
    store.close()


def test_a_gap_event_that_did_not_recover_everything_marks_a_hole_of_its_symbol(tmp_path):
    store = DuckDBStore(tmp_path / "t.duckdb")
    store.write(trades=[
        trades("bybit", "BTC-USDT", [(3, 10 * S), (90, 20 * S), (95, 40 * S), (99, 50 * S)]),
        trades("bybit", "ETH-USDT", [(4, 10 * S), (91, 30 * S)]),
    ])  # fmt: skip
    partly = Gap(source="bybit", exchange="bybit", symbol="BTC-USDT", first_missing=91,
                 last_missing=94, ts=25 * S, recovered=1)  # fmt: skip
    whole = Gap(source="bybit", exchange="bybit", symbol="BTC-USDT", first_missing=96,
                last_missing=98, ts=45 * S, recovered=3)  # fmt: skip
    store.write(events=[(g.ts, "gap", g.source, msgspec.json.encode(g).decode())
                        for g in (partly, whole)])  # fmt: skip
    assert find_gaps(store) == [Task("bybit", "BTC-USDT", 20 * S, 40 * S + 1)]
    store.close()
