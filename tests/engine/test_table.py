"""The window table's sending and freeing, whatever `every` a caller throttles with."""

from __future__ import annotations

import numpy as np

from tickpipe.engine.aggregate import SortedTrades, partials
from tickpipe.engine.table import WindowTable
from tickpipe.engine.windows import parse_window
from tickpipe.records import Instrument, TradeBatch

S = 1_000_000
NEVER_THROTTLED = np.iinfo(np.int64).max  # batch recomputation: nothing open is ever sent


def one_trade_per_second(n: int) -> SortedTrades:
    ts = np.arange(n, dtype=np.int64) * S + S // 2
    batch = TradeBatch(
        "x", [Instrument("x", "BTC-USDT")], np.zeros(n, np.int32), np.arange(n, dtype=np.int64),
        np.full(n, 100.0), np.ones(n), np.zeros(n, np.int8), ts, ts,
    )  # fmt: skip
    return SortedTrades.of(np.zeros(n, np.int64), batch)


def test_final_windows_are_sent_and_freed_even_when_open_ones_are_never_sent() -> None:
    table = WindowTable(parse_window("1s"))
    table.merge(partials(one_trade_per_second(5), S), 1)
    assert len(table.due(0, NEVER_THROTTLED)) == 0  # open: held back
    done = table.finalize(np.array([3 * S]))
    assert sorted(table.start[done].tolist()) == [0, S, 2 * S]
    assert sorted(table.start[table.due(0, NEVER_THROTTLED)].tolist()) == [0, S, 2 * S]
    assert table.forget(np.array([3 * S])) == 3
    assert len(table) == 2


def test_an_update_is_held_back_until_every_has_passed_since_it_was_sent() -> None:
    table = WindowTable(parse_window("1m"))
    trades = one_trade_per_second(3)
    table.merge(partials(trades, 60 * S), 1)
    assert len(table.due(10 * S, S)) == 1  # a new window: at once
    table.merge(partials(trades, 60 * S), 2)
    assert len(table.due(10 * S + S // 2, S)) == 0
    assert len(table.due(11 * S - 1, S)) == 0
    assert len(table.due(11 * S, S)) == 1
    assert len(table.due(20 * S, S)) == 0  # nothing changed since
