"""`tickpipe verify` over any store: what a short simulated run stored passes, and a candle
that disagrees with the stored trades is named."""

from __future__ import annotations

import msgspec
from serve.conftest import simulate

from tickpipe.stores.base import Store
from tickpipe.verify import verify

S = 1_000_000
END = 1_700_000_400 * S


def test_verify_passes_on_what_a_short_simulated_run_stored(store: Store) -> None:
    simulate(store, END, minutes=2)
    report = verify(store)
    assert report.ok, report.mismatches[:3]
    totals = store.totals()
    assert report.trades == totals["stored_trades"] > 1000
    assert report.candles == totals["stored_candles"] > 100
    assert report.intervals == store.intervals()


def test_verify_names_a_stored_candle_the_trades_do_not_make(store: Store) -> None:
    simulate(store, END, minutes=2)
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
