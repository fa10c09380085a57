"""Rolling statistics per symbol, computed from 1-minute candles as they close.

The classic pipelines of this kind report a 30-minute rolling average of the 1-minute close
and the 5-minute min/max/average price. Keeping the last 30 closed minutes per symbol is all
the state that takes. A late correction of a minute that already closed is not fed back
into the statistics (the corrected candle itself is stored).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from tickpipe.records import Instrument, RollingStat

MINUTE = 60_000_000


@dataclass(frozen=True, slots=True)
class MinuteSnapshot:
    """What the statistics need of a closed 1-minute candle."""

    start: int
    close: float
    high: float
    low: float
    price_sum: float
    trades: int


class RollingStats:
    """Keeps each symbol's closed 1-minute candles for 30 minutes and derives the statistics."""

    def __init__(self, long_window: int = 30 * MINUTE, short_window: int = 5 * MINUTE) -> None:
        self.long_window = long_window
        self.short_window = short_window
        self._minutes: dict[int, deque[MinuteSnapshot]] = {}

    def on_minute_closed(
        self, gid: int, instrument: Instrument, minute: MinuteSnapshot
    ) -> RollingStat:
        """The statistics as of the end of `minute`, which has just become final."""
        minutes = self._minutes.setdefault(gid, deque())
        minutes.append(minute)
        end = minute.start + MINUTE
        while minutes and minutes[0].start < end - self.long_window:
            minutes.popleft()
        ordered = sorted(minutes, key=lambda m: m.start)
        recent = [m for m in ordered if m.start >= end - self.short_window]
        trades = sum(m.trades for m in recent)
        return RollingStat(
            exchange=instrument.exchange,
            symbol=instrument.symbol,
            ts=end,
            avg_close_30m=sum(m.close for m in ordered) / len(ordered),
            min_price_5m=min(m.low for m in recent),
            max_price_5m=max(m.high for m in recent),
            avg_price_5m=sum(m.price_sum for m in recent) / trades,
        )
