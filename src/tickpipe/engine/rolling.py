"""Rolling statistics per symbol, computed from 1-minute candles as they close.

The classic pipelines of this kind report a 30-minute rolling average of the 1-minute close
and the 5-minute min/max/average price. Keeping the last 30 closed minutes per symbol is all
the state that takes. A late correction of a minute that already closed is not fed back
into the statistics (the corrected candle itself is stored).
"""

from __future__ import annotations

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
    """Keeps each symbol's closed 1-minute candles and derives the statistics as of a minute.

    A statistic only looks back: the minutes starting in [end - window, end). A minute that
    closes late (a late trade made it) gets a statistic of its own past, not of later minutes.
    """

    def __init__(self, long_window: int = 30 * MINUTE, short_window: int = 5 * MINUTE) -> None:
        self.long_window = long_window
        self.short_window = short_window
        self._minutes: dict[int, dict[int, MinuteSnapshot]] = {}  # gid -> start -> minute
        self._newest: dict[int, int] = {}  # gid -> newest minute start seen

    def on_minute_closed(
        self, gid: int, instrument: Instrument, minute: MinuteSnapshot
    ) -> RollingStat:
        """The statistics as of the end of `minute`, which has just become final."""
        minutes = self._minutes.setdefault(gid, {})
        minutes[minute.start] = minute
        newest = self._newest[gid] = max(self._newest.get(gid, minute.start), minute.start)
        for start in [s for s in minutes if s < newest - 2 * self.long_window]:
            del minutes[start]  # two windows back: late minutes still find their past
        end = minute.start + MINUTE
        window = [m for s, m in minutes.items() if end - self.long_window <= s < end]
        recent = [m for m in window if m.start >= end - self.short_window]
        trades = sum(m.trades for m in recent)
        return RollingStat(
            exchange=instrument.exchange,
            symbol=instrument.symbol,
            ts=end,
            avg_close_30m=sum(m.close for m in window) / len(window),
            min_price_5m=min(m.low for m in recent),
            max_price_5m=max(m.high for m in recent),
            avg_price_5m=sum(m.price_sum for m in recent) / trades,
        )

    def state(self) -> dict[str, list]:
        """Each symbol's kept minutes, as columns (engine/snapshot.py)."""
        rows = [(g, m) for g, minutes in self._minutes.items() for m in minutes.values()]
        return {
            "gid": [g for g, _ in rows],
            **{f: [getattr(m, f) for _, m in rows] for f in MinuteSnapshot.__dataclass_fields__},
            "newest_gid": list(self._newest), "newest": list(self._newest.values()),
        }  # fmt: skip

    def load_state(self, state: dict[str, list]) -> None:
        """Keep the minutes `state()` held."""
        fields = list(MinuteSnapshot.__dataclass_fields__)
        self._minutes = {}
        for g, *values in zip(state["gid"], *(state[f] for f in fields), strict=True):
            minute = MinuteSnapshot(*values)
            self._minutes.setdefault(g, {})[minute.start] = minute
        self._newest = dict(zip(state["newest_gid"], state["newest"], strict=True))
