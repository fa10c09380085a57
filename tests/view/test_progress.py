"""verify's progress off a terminal: a plain line at the start, then one per period and per
stage; on a terminal a bar (never a plain line)."""

from __future__ import annotations

import io

from tickpipe.runtime.clock import ManualClock
from tickpipe.verify import Checked
from tickpipe.view.progress import VerifyProgress


def test_plain_lines_come_at_the_start_every_period_and_per_stage() -> None:
    out, clock = io.StringIO(), ManualClock()
    checked = Checked(instruments=4, expected_trades=1000)
    with VerifyProgress(out, every_s=10.0, clock=clock, tty=False) as progress:
        for _ in range(5):
            clock.advance(3.0)
            checked.trades += 100
            progress(checked)
        checked.instruments_done, checked.stage = 4, "counting duplicate trades"
        progress(checked)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # at 3 s, at 15 s (10 s later), and the new stage
    assert lines[0].startswith("verify: recomputing candles: 100 of ~1,000 trades checked")
    assert "0 of 4 instruments done" in lines[0] and "s left" in lines[0]
    assert "500 of ~1,000" in lines[1]
    assert lines[2].startswith("verify: counting duplicate trades: 500 of ~1,000")
    assert "4 of 4 instruments done" in lines[2]


def test_a_terminal_gets_a_bar_not_lines() -> None:
    out = io.StringIO()
    with VerifyProgress(out, tty=True) as progress:
        progress(Checked(instruments=2, expected_trades=10, trades=5))
    assert "verify: recomputing candles:" not in out.getvalue()
