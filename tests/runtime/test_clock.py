"""The injectable clock: a ManualClock moves only when told, both readings together."""

from __future__ import annotations

import time

import pytest

from tickpipe.runtime.clock import SYSTEM_CLOCK, ManualClock, now_us


def test_a_manual_clock_moves_wall_and_monotonic_time_together_and_never_back() -> None:
    clock = ManualClock(now_us=5_000_000, monotonic_s=10.0)
    clock.advance(1.5)
    assert (clock.now_us(), clock.monotonic_s()) == (6_500_000, 11.5)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_the_system_clock_reads_the_machine() -> None:
    before = time.time_ns() // 1000
    assert before <= SYSTEM_CLOCK.now_us() <= now_us() <= time.time_ns() // 1000
    assert abs(SYSTEM_CLOCK.monotonic_s() - time.monotonic()) < 1.0
