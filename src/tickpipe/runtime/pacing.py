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
_NEVER = -(1 << 60)  # a send time long ago (now minus it stays inside int64)


class StepPacer:
    """Which delivered batches want an engine step at once (see the module doc).

    `windows`: the engine's (their slides' greatest common divisor is the grid on which any
    of them opens a new window); `every_us`: the engine's `provisional_every`. Per
    instrument (exchange, symbol), as candles name it, the pacer keeps the newest event time
    it saw and when each window holding it was last sent: the windows a batch in event-time
    order adds to. Its trades behind those (a correction of an older window) are sent by
    whichever step comes, up to `linger_s` later. Per-instrument state sits in arrays, so a
    delivery costs a few numpy calls whatever the number of instruments in it.
    """

    def __init__(self, windows: Sequence[Window], every_us: int) -> None:
        if not windows:
            raise ValueError("the pacer needs the engine's windows")
        self.grid_us = functools.reduce(math.gcd, (w.slide for w in windows))
        self.every_us = every_us
        self._size = {w.name: w.size for w in windows}
        self._id: dict[tuple[str, str], int] = {}  # instrument -> its row in the arrays
        self._newest = np.zeros(0, np.int64)  # the newest event time seen (_FLOOR: none)
        self._sent = np.zeros(0, np.int64)  # the oldest send of the windows holding it
        # The windows holding it: (interval, start) -> when sent (the engine's time).
        self._open: dict[int, dict[tuple[str, int], int]] = {}
        # The rows of the last batch's instrument list (a source reuses its list).
        self._rows_of: tuple[list, int, np.ndarray] | None = None

    def _rows(self, instruments: list) -> np.ndarray:
        cached = self._rows_of
        if cached is not None and cached[0] is instruments and cached[1] == len(instruments):
            return cached[2]
        ids = self._id
        for inst in instruments:
            ids.setdefault((inst.exchange, inst.symbol), len(ids))
        grow = len(ids) - len(self._newest)
        if grow > 0:
            self._newest = np.concatenate([self._newest, np.full(grow, _FLOOR, np.int64)])
            self._sent = np.concatenate([self._sent, np.full(grow, _NEVER, np.int64)])
        rows = np.array([ids[(i.exchange, i.symbol)] for i in instruments], np.int64)
        self._rows_of = (instruments, len(instruments), rows)
        return rows

    def urgent(self, batch: TradeBatch, now_us: int) -> bool:
        """Whether `batch` (just delivered, at wall time `now_us`) makes a candle update due:
        step at once. Notes the windows its trades open either way."""
        if not len(batch):
            return False
        rows = self._rows(batch.instruments)
        if len(rows) == 1:
            newest = np.array([batch.ts.max()], np.int64)
            present = np.zeros(1, np.int64)
        else:
            newest = np.full(len(rows), _FLOOR, np.int64)
            np.maximum.at(newest, batch.instrument, batch.ts)
            present = np.flatnonzero(newest > _FLOOR)
            newest = newest[present]
        row = rows[present]
        moved = newest - newest % self.grid_us > self._newest[row]  # a new window: sent at once
        if moved.any():
            for r, ts in zip(row[moved].tolist(), newest[moved].tolist(), strict=True):
                self._moved(r, ts)
            return True
        return bool((now_us - self._sent[row] >= self.every_us).any())

    def _moved(self, row: int, ts: int) -> None:
        """The instrument's newest trade is now at `ts`: forget windows that do not hold it."""
        self._newest[row] = ts
        held = self._open.get(row)
        if held:
            size = self._size
            for window in [w for w in held if w[1] + size[w[0]] <= ts]:
                del held[window]
            self._sent[row] = min(held.values(), default=_NEVER)

    def hold_us(self, now_us: int, grace_us: int) -> int:
        """How long (µs) a lingering step should still wait at wall time `now_us`: until
        `grace_us` after the latest update that fell due within the last `grace_us`, so that
        the instrument's next trade, which steps at once, goes in it; 0: nothing fell due."""
        due = self._sent + self.every_us
        due = due[(now_us - grace_us < due) & (due <= now_us)]
        return int(due.max()) + grace_us - now_us if len(due) else 0

    def stepped(self, candles: list[Candle]) -> None:
        """A step sent `candles`. Their `updated_at` is the engine's time of the step, the
        time its own `provisional_every` counts from, so an update the pacer calls due is due
        in the engine too. An instrument's next update is due when the first of its open
        windows' is."""
        size, ids, newest = self._size, self._id, self._newest
        changed = set()
        for candle in candles:
            row = ids.get((candle.exchange, candle.symbol))
            if candle.final or row is None or candle.interval not in size:
                continue
            ts = int(newest[row])
            if candle.start <= ts < candle.start + size[candle.interval]:
                self._open.setdefault(row, {})[(candle.interval, candle.start)] = candle.updated_at
                changed.add(row)
        for row in changed:
            self._sent[row] = min(self._open[row].values())
