"""`tickpipe verify` over any store: what a short simulated run stored passes, and a candle
that disagrees with the stored trades is named, unless it is the stale provisional candle of
a window open at an unclean stop."""

from __future__ import annotations

from itertools import pairwise

import msgspec
import pytest
from serve.conftest import simulate

from tickpipe.records import Candle
from tickpipe.stores.base import Store
from tickpipe.verify import verify

S = 1_000_000
END = 1_700_000_400 * S


def test_verify_passes_on_what_a_short_simulated_run_stored(store: Store) -> None:
    simulate(store, END, minutes=2, one_write=True)
    report = verify(store)
    assert report.ok, report.mismatches[:3]
    totals = store.totals()
    assert report.trades == totals["stored_trades"] > 1000
    assert report.candles == totals["stored_candles"] > 100
    assert report.intervals == store.intervals()


def test_verify_names_a_stored_candle_the_trades_do_not_make(store: Store) -> None:
    simulate(store, END, minutes=2, one_write=True)
    interval = store.intervals()[0]
    good = next(c for c in store.stored_candles(interval) if c.trades > 2)
    wrong = msgspec.structs.replace(good, close=good.close + 1, revision=good.revision + 1)
    store.write(candles=[wrong])  # a newer revision: every store takes it
    report = verify(store)
    assert not report.ok and report.mismatch_count == 1
    (m,) = report.mismatches
    assert (m.exchange, m.symbol, m.interval, m.start) == (
        good.exchange, good.symbol, interval, good.start,
    )  # fmt: skip
    assert m.problem == "close"
    assert (m.stored["close"], m.recomputed["close"]) == (good.close + 1, good.close)


def lagging(candle: Candle, final: bool) -> Candle:
    """`candle` as a provisional update written before its last trade came would hold it."""
    return msgspec.structs.replace(
        candle, trades=candle.trades - 1, volume=candle.volume / 2, final=final,
        revision=candle.revision + 1,
    )  # fmt: skip


def newest(store: Store) -> Candle:
    """The newest 1m candle of an instrument, one of two trades or more."""
    last = {(c.exchange, c.symbol): c for c in store.stored_candles("1m")}
    return next(c for c in last.values() if c.trades > 1)


def closed(store: Store) -> Candle:
    """A final 1s candle of two trades or more that a final one of its instrument follows."""
    return next(
        c for c, later in pairwise(store.stored_candles("1s"))
        if c.final and later.final and c.trades > 1 and c.symbol == later.symbol
        and c.exchange == later.exchange
    )  # fmt: skip


def test_a_lagging_provisional_newest_candle_is_stale_not_a_mismatch(store: Store) -> None:
    simulate(store, END, minutes=2, one_write=True)
    store.write(candles=[lagging(newest(store), final=False)])  # open at a kill -9
    report = verify(store)
    assert report.ok, report.mismatches[:3]
    assert (report.mismatch_count, report.stale_provisional) == (0, 1)


@pytest.mark.parametrize("final", [True, False], ids=["final", "provisional"])
def test_a_lagging_candle_of_a_closed_window_fails(store: Store, final: bool) -> None:
    simulate(store, END, minutes=2, one_write=True)
    wrong = closed(store)
    store.write(candles=[lagging(wrong, final)])
    report = verify(store)
    assert not report.ok
    assert (report.mismatch_count, report.stale_provisional) == (1, 0)
    assert (report.mismatches[0].start, report.mismatches[0].problem) == (
        wrong.start, "trades, volume",
    )  # fmt: skip


SINCE, UNTIL = END - 90 * S, END - 30 * S  # cuts the 1m windows at both ends


def test_history_reads_of_a_range_hold_what_the_whole_history_holds_in_it(store: Store) -> None:
    simulate(store, END, minutes=2, one_write=True)
    trades = [t for b in store.trade_batches() for t in b.to_trades()]
    ranged = [t for b in store.trade_batches(since=SINCE, until=UNTIL) for t in b.to_trades()]
    assert ranged == [t for t in trades if SINCE <= t.ts < UNTIL] != []
    for interval in ("1s", "1m"):
        candles = list(store.stored_candles(interval))
        in_range = [c for c in candles if SINCE <= c.start < UNTIL]
        assert list(store.stored_candles(interval, since=SINCE, until=UNTIL)) == in_range != []
    assert store.duplicate_trades(since=SINCE, until=UNTIL) == 0


def test_a_range_reports_a_wrong_candle_in_it_and_none_outside(store: Store) -> None:
    simulate(store, END, minutes=2, one_write=True)
    finals = [c for c in store.stored_candles("1s") if c.final and c.trades > 1]
    inside = next(c for c in finals if c.start >= SINCE and c.start + S <= UNTIL)
    outside = next(c for c in finals if c.start + S <= SINCE)
    store.write(candles=[
        msgspec.structs.replace(c, close=c.close + 1, revision=c.revision + 1)
        for c in (inside, outside)
    ])  # fmt: skip
    report = verify(store, since=SINCE, until=UNTIL)
    assert report.mismatch_count == 1
    (m,) = report.mismatches
    assert (m.symbol, m.start) == (inside.symbol, inside.start)
    assert report.cut_windows > 0  # the 1m, 5m and 1h windows around the range's edges
    assert verify(store).mismatch_count == 2
