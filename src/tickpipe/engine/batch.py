"""Candles recomputed from a whole stored history, every window kind in one bounded pass.

`tickpipe verify` needs the candles the stored trades make, whatever the store. The trades come
in chunks ordered by (exchange, symbol, ts, seq); each chunk goes through the engine's own
aggregation (`partials` merged into a `WindowTable`), and a window is handed out and freed as
soon as no later trade can reach it: its instrument is behind us, or the chunk's newest trade
of that instrument lies at or past its end. So memory holds one chunk and the open windows of
one instrument, and the candles come out in the order the trades went in.

Nothing is de-duplicated or dropped as late here: a batch recomputation counts every stored
trade, which is what lets verify see a trade stored twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from tickpipe.engine.aggregate import SortedTrades, partials, sort_order
from tickpipe.engine.table import WindowTable
from tickpipe.engine.windows import Window
from tickpipe.records import Candle, TradeBatch

_DONE = np.iinfo(np.int64).max // 4  # a watermark past every window


def recompute(
    batches: Iterable[TradeBatch], windows: Sequence[Window]
) -> Iterator[list[list[Candle]]]:
    """Final candles of each of `windows` over `batches` (each instrument's trades together,
    in (ts, seq) order): per batch, one list per window of the candles it completed, per
    instrument in the order they first appear, by start. One pass serves every window."""
    tables = [WindowTable(w) for w in windows]
    names: list[tuple[str, str]] = []
    gids: dict[tuple[str, str], int] = {}
    for batch in batches:
        if not len(batch):
            continue
        codes = [gids.setdefault((i.exchange, i.symbol), len(gids)) for i in batch.instruments]
        names.extend(list(gids)[len(names) :])
        gid = np.array(codes, np.int64)[batch.instrument]
        order = sort_order(gid, batch.ts, batch.seq)
        trades = SortedTrades.of(gid[order], batch.take(order))
        # Every instrument before the last one of this batch is complete; the last one is
        # complete up to its newest trade.
        watermark = np.full(len(names), _DONE, np.int64)
        watermark[trades.gid[-1]] = trades.ts[-1]
        for table in tables:
            table.merge(partials(trades, table.window.slide), 0)
        yield [_hand_out(table, watermark, names) for table in tables]
    yield [_hand_out(table, np.full(len(names), _DONE, np.int64), names) for table in tables]


def _hand_out(
    table: WindowTable, watermark: np.ndarray, names: list[tuple[str, str]]
) -> list[Candle]:
    """The windows `watermark` completes, by (instrument, start), then freed."""
    done = table.finalize(watermark)
    table.due(0, np.iinfo(np.int64).max)  # marked sent, so that `forget` frees them
    done = done[np.lexsort((table.start[done], table.gid[done]))]
    candles = table.candles(done, names, 0)
    table.forget(watermark)
    return candles
