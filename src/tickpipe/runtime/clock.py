"""Time, in one place: wall-clock microseconds and a monotonic reading, behind a `Clock`.

Runtime parts, the monitor and the runners take a clock (the system one by default), so a
test can hand them a `ManualClock` and move time on instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol


def now_us() -> int:
    """Wall-clock time in integer microseconds since the epoch (UTC)."""
    return time.time_ns() // 1000


class Clock(Protocol):
    def now_us(self) -> int:
        """Wall-clock time, µs since the epoch (event times and stored timestamps)."""
        ...

    def monotonic_s(self) -> float:
        """Seconds that never go back (uptime, rates, tick timers)."""
        ...


class SystemClock:
    """The machine's clocks."""

    def now_us(self) -> int:
        return now_us()

    def monotonic_s(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: `advance(seconds)` moves both readings."""

    def __init__(self, now_us: int = 1_700_000_000_000_000, monotonic_s: float = 1000.0) -> None:
        self._now_us = now_us
        self._monotonic_s = monotonic_s

    def now_us(self) -> int:
        return self._now_us

    def monotonic_s(self) -> float:
        return self._monotonic_s

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock never goes back")
        self._now_us += round(seconds * 1e6)
        self._monotonic_s += seconds


SYSTEM_CLOCK = SystemClock()
