"""When a live runner steps the engine: at once for trades that make a candle update due, a
little later for the rest.

An engine step costs about as much for one trade as for a hundred (five window tables of a few
dozen numpy calls each, then the store hand-over, the metrics, the live push), so a feed of
single-trade frames stepped per frame spends its CPU on the steps. Most of those steps send
nothing anyway: an open candle goes out at most every `provisional_every` (250 ms), and a
trade whose candles are not due only has to be counted and stored. The pacer tells the two
apart per hand-over, from what it saw pass: a batch is *urgent* when one of its instruments
starts a new window (its first update is sent at once) or has sent no open candle for
`provisional_every` (its next update is due). Urgent trades are stepped at once, so a candle
update's newest trade waits no longer than before; the others linger up to `linger_s` and go
in one step together. The pacer only decides when to step, never what a step contains, so the
candles are those of any other batching (streaming equals batch).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from tickpipe.engine.windows import Window
from tickpipe.records import Candle, TradeBatch

LINGER_S = 0.02  # trades whose candles are not due wait this long for a step...
# ...or, while an instrument's update has just fallen due, up to this long more for its next
# trade (a step without it would send the update with an older newest trade), never past
# twice `LINGER_S`.
HOLD_S = 0.01
# A step takes at most this many lingering trades (a burst goes in at once, not after linger_s).
LINGER_TRADES = 20_000

_FLOOR = np.iinfo(np.int64).min


class StepPacer:
    """Which delivered batches want an engine step at once (see the module doc).

    `windows`: the engine's (their slides' greatest common divisor is the grid on which any
    of them opens a new window); `every_us`: the engine's `provisional_every`. Per
    instrument (exchange, symbol), as candles name it, the pacer keeps the newest event time
    it saw and when each window holding it was last sent: the windows a batch in event-time
    order adds to. Its trades behind those (a correction of an older window) are sent by
    whichever step comes, up to `linger_s` later.
    """

    def __init__(self, windows: Sequence[Window], every_us: int) -> None:
        if not windows:
            raise ValueError("the pacer needs the engine's windows")
        self.grid_us = functools.reduce(math.gcd, (w.slide for w in windows))
        self.every_us = every_us
        self._size = {w.name: w.size for w in windows}
        self._newest: dict[tuple[str, str], int] = {}  # the newest event time seen
        # The windows holding it: (interval, start) -> when sent (the engine's time).
        self._open: dict[tuple[str, str], dict[tuple[str, int], int]] = {}
        self._sent_us: dict[tuple[str, str], int] = {}  # the oldest of those: next due

    def urgent(self, batch: TradeBatch, now_us: int) -> bool:
        """Whether `batch` (just delivered, at wall time `now_us`) makes a candle update due:
        step at once. Notes the windows its trades open either way."""
        if not len(batch):
            return False
        instruments = batch.instruments
        if len(instruments) == 1:
            newest = np.array([batch.ts.max()], np.int64)
            present: list[int] = [0]
        else:
            newest = np.full(len(instruments), _FLOOR, np.int64)
            np.maximum.at(newest, batch.instrument, batch.ts)
            present = np.flatnonzero(newest > _FLOOR).tolist()
        grid, every, seen, sent = self.grid_us, self.every_us, self._newest, self._sent_us
        hurry = False
        for i, ts in zip(present, newest[present].tolist(), strict=True):
            inst = instruments[i]
            key = (inst.exchange, inst.symbol)
            before = seen.get(key)
            if before is None or ts - ts % grid > before:  # a new window: sent at once
                self._moved(key, ts)
                hurry = True
            elif now_us - sent.get(key, -math.inf) >= every:
                hurry = True
        return hurry

    def _moved(self, key: tuple[str, str], ts: int) -> None:
        """The instrument's newest trade is now at `ts`: forget windows that do not hold it."""
        self._newest[key] = ts
        held = self._open.get(key)
        if held:
            size = self._size
            for window in [w for w in held if w[1] + size[w[0]] <= ts]:
                del held[window]
            if held:
                self._sent_us[key] = min(held.values())
            else:
                self._sent_us.pop(key, None)

    def hold_us(self, now_us: int, grace_us: int) -> int:
        """How long (µs) a lingering step should still wait at wall time `now_us`: until
        `grace_us` after the latest update that fell due within the last `grace_us`, so that
        the instrument's next trade, which steps at once, goes in it; 0: nothing fell due."""
        every, latest = self.every_us, None
        for sent in self._sent_us.values():
            due = sent + every
            if now_us - grace_us < due <= now_us and (latest is None or due > latest):
                latest = due
        return 0 if latest is None else latest + grace_us - now_us

    def stepped(self, candles: list[Candle]) -> None:
        """A step sent `candles`. Their `updated_at` is the engine's time of the step, the
        time its own `provisional_every` counts from, so an update the pacer calls due is due
        in the engine too. An instrument's next update is due when the first of its open
        windows' is."""
        size, newest = self._size, self._newest
        changed = set()
        for candle in candles:
            key = (candle.exchange, candle.symbol)
            ts = newest.get(key)
            if candle.final or ts is None or candle.interval not in size:
                continue
            if candle.start <= ts < candle.start + size[candle.interval]:
                self._open.setdefault(key, {})[(candle.interval, candle.start)] = candle.updated_at
                changed.add(key)
        for key in changed:
            self._sent_us[key] = min(self._open[key].values())
