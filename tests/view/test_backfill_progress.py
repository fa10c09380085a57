"""Backfill progress off a terminal: a line at most every `every_s`, and one when a task ends."""

from __future__ import annotations

import io

from tickpipe.history.backfill import Task, TaskProgress
from tickpipe.runtime.clock import ManualClock
from tickpipe.view.backfill_progress import BackfillProgress


def test_lines_name_share_rate_and_time_left_then_one_at_the_end():
    out, clock = io.StringIO(), ManualClock()
    task = Task("binance", "BTC-USDT", 0, 1000)
    done = TaskProgress(task, 0, started_s=clock.monotonic_s())
    with BackfillProgress(out, every_s=10, clock=clock, tty=False) as progress:
        progress(done)  # started
        clock.advance(4)
        done.reached_us, done.fetched, done.new = 250, 4000, 3000
        progress(done)  # within 10 s of the last line: nothing
        clock.advance(6)
        done.reached_us, done.fetched = 500, 10_000
        progress(done)
        clock.advance(1)
        done.reached_us, done.fetched = 1000, 20_000
        progress(done)
        progress(done)  # the end is said once
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[1] == (
        "backfill: binance BTC-USDT: 50% of the range, 10,000 trades fetched (1,000 trades/s), "
        "3,000 new, about 10s left"
    )
    assert lines[2].startswith("backfill: binance BTC-USDT: 100% of the range, 20,000 trades")
