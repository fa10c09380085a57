"""The state of every window of one kind (say, all 1-minute candles), held as columns.

A window is a slot: a row index into numpy arrays, found through a dict keyed
(instrument, start). Merging a batch's partial candles is then a handful of vectorized
operations on the slots they hit, whatever the number of symbols; only finding the slots and
building the candles that are sent out touch Python objects one at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat

import numpy as np
from numpy.typing import NDArray

from tickpipe.engine.aggregate import SUM_ROWS, Partials
from tickpipe.engine.windows import Window
from tickpipe.records import Candle

_NEVER = np.iinfo(np.int64).min // 4
# The sums come last, in `SUM_ROWS` order: one slice of the float block merges them all.
_FLOATS = ("open", "high", "low", "close", *SUM_ROWS)
_SUM_SLICE = slice(len(_FLOATS) - len(SUM_ROWS), len(_FLOATS))
_INTS = ("gid", "start", "open_ts", "open_seq", "close_ts", "close_seq", "trades", "revision",
         "emitted_at", "bumped")  # fmt: skip
_BOOLS = ("used", "final", "dirty")
_NONE = np.zeros(0, np.int64)
_NONE_HELD = np.iinfo(np.int64).max // 4  # the oldest send time when no window is pending
_INIT_FLOATS = ("open", "high", "low", "close")
_INIT_INTS = ("open_ts", "open_seq", "close_ts", "close_seq", "trades")


class WindowTable:
    """All live windows of one `Window` kind across instruments: open ones and final ones
    kept for late corrections until they fall behind the correction horizon."""

    # One entry per slot, in the columns `_grow` creates from _FLOATS, _INTS and _BOOLS: the
    # rows of one block per type, so the sums of a merge are one operation.
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]
    quote_volume: NDArray[np.float64]
    price_sum: NDArray[np.float64]
    buy_volume: NDArray[np.float64]
    sell_volume: NDArray[np.float64]
    gid: NDArray[np.int64]
    start: NDArray[np.int64]
    open_ts: NDArray[np.int64]
    open_seq: NDArray[np.int64]
    close_ts: NDArray[np.int64]
    close_seq: NDArray[np.int64]
    trades: NDArray[np.int64]
    revision: NDArray[np.int64]
    emitted_at: NDArray[np.int64]
    bumped: NDArray[np.int64]
    used: NDArray[np.bool_]
    final: NDArray[np.bool_]
    dirty: NDArray[np.bool_]
    _floats: NDArray[np.float64]  # the blocks whose rows the columns are
    _ints: NDArray[np.int64]
    _bools: NDArray[np.bool_]
    _sums: NDArray[np.float64]  # the rows of the sums (`SUM_ROWS`)

    def __init__(self, window: Window, capacity: int = 1024) -> None:
        self.window = window
        self.index: dict[tuple[int, int], int] = {}
        self.open_slots = np.zeros(0, np.int64)  # slots not yet final
        self._free: list[int] = []
        self._pending = [np.zeros(0, np.int64)]  # slots that may be dirty
        # What lets a step skip the work when nothing can be due: `_check`, a window was
        # added, closed or corrected since the last full look (it may be due at once); else
        # the oldest send time of a pending window (a bound: never later than the truth).
        # And the earliest end of an open window (None: to be found again).
        self._check = True
        self._oldest_sent = _NONE_HELD
        self._first_end: int | None = None
        self._capacity = 0
        self._grow(capacity)

    def __len__(self) -> int:
        return len(self.index)

    def _grow(self, capacity: int) -> None:
        old = self._capacity
        for names, dtype, attr in ((_FLOATS, np.float64, "_floats"), (_INTS, np.int64, "_ints"),
                                   (_BOOLS, bool, "_bools")):  # fmt: skip
            block = np.zeros((len(names), capacity), dtype)
            if old:
                block[:, :old] = getattr(self, attr)
            setattr(self, attr, block)
            for row, name in enumerate(names):
                setattr(self, name, block[row])
        self._sums = self._floats[_SUM_SLICE]
        self.emitted_at[old:] = _NEVER
        self.bumped[old:] = -1
        self._free.extend(range(capacity - 1, old - 1, -1))
        self._capacity = capacity

    def _allocate(self, keys: list[tuple[int, int]]) -> np.ndarray:
        if len(keys) > len(self._free):
            self._grow(max(2 * self._capacity, self._capacity + len(keys)))
        slots = [self._free.pop() for _ in keys]
        self.index.update(zip(keys, slots, strict=True))
        return np.array(slots, np.int64)

    # -- merging -------------------------------------------------------------------------

    def merge(self, part: Partials, batch_no: int) -> int:
        """Merge partial candles (at this window's slide) into their windows.

        Returns how many final windows were corrected (each counts once per batch).
        """
        window = self.window
        corrected = 0
        for k in range(window.size // window.slide):
            start = part.start - k * window.slide if k else part.start
            corrected += self._merge_one(part, start, batch_no)
        return corrected

    def _merge_one(self, p: Partials, start: np.ndarray, batch_no: int) -> int:
        keys = zip(p.gid.tolist(), start.tolist(), strict=True)
        # One C-level pass of dict lookups (map), no list of keys: this runs per window per batch.
        slots = np.fromiter(map(self.index.get, keys, repeat(-1)), np.int64, len(start))
        new = slots < 0
        # Every partial hits a held window (the live case): the partial arrays as they are.
        old: np.ndarray | slice = slice(None)
        if np.count_nonzero(new):
            old = (~new).nonzero()[0]
            fresh = new.nonzero()[0]
            fresh_keys = zip(p.gid[fresh].tolist(), start[fresh].tolist(), strict=True)
            created = self._allocate(list(fresh_keys))
            slots[fresh] = created
            self._init(created, p, fresh, start[fresh])
            self._send_passed(p.gid[fresh], start[fresh])
            self.open_slots = np.concatenate([self.open_slots, created])
            self._check = True  # a new window may be due at once
            if self._first_end is not None:
                end = int(start[fresh].min()) + self.window.size
                self._first_end = min(self._first_end, end)
        corrected = 0
        if isinstance(old, slice) or len(old):
            s = slots[old]
            ots, oseq = p.open_ts[old], p.open_seq[old]
            first_ts = self.open_ts[s]
            earlier = (ots < first_ts) | ((ots == first_ts) & (oseq < self.open_seq[s]))
            if np.count_nonzero(earlier):  # live trades come in order: mostly none is earlier
                e = s[earlier]
                self.open[e] = p.open[old][earlier]
                self.open_ts[e] = ots[earlier]
                self.open_seq[e] = oseq[earlier]
            cts, cseq = p.close_ts[old], p.close_seq[old]
            last_ts = self.close_ts[s]
            later = (cts > last_ts) | ((cts == last_ts) & (cseq > self.close_seq[s]))
            # In order, every one is later.
            la = s if np.count_nonzero(later) == len(later) else s[later]
            self.close[la] = p.close[old] if la is s else p.close[old][later]
            self.close_ts[la] = cts if la is s else cts[later]
            self.close_seq[la] = cseq if la is s else cseq[later]
            self.high[s] = np.maximum(self.high[s], p.high[old])
            self.low[s] = np.minimum(self.low[s], p.low[old])
            sums = self._sums
            added = sums.take(s, axis=1)  # take and put: cheaper than `sums[:, s] += ...`
            added += p.sums[:, old]
            sums[:, s] = added
            self.trades[s] += p.trades[old]
            final = self.final[s]
            if np.count_nonzero(final):  # a correction of a closed window: sent at once
                self._check = True
                fix = s[final & (self.bumped[s] != batch_no)]
                self.revision[fix] += 1
                self.bumped[fix] = batch_no
                corrected = len(fix)
            self._oldest_sent = min(self._oldest_sent, int(self.emitted_at[s].min()))
        self.dirty[slots] = True
        self._pending.append(slots)
        return corrected

    def _send_passed(self, gids: np.ndarray, starts: np.ndarray) -> None:
        """Windows starting at `starts` opened for instruments `gids`: their open windows that
        end by then have passed (only late trades can still change them), and their last
        update goes out in this step rather than up to `provisional_every` later. A live
        view then shows a candle's close as the next candle starts, not after a throttle."""
        held = self.open_slots
        held = held[np.isin(self.gid[held], gids)]
        if not len(held):
            return
        newest = np.full(int(gids.max()) + 1, _NEVER, np.int64)
        np.maximum.at(newest, gids, starts)
        passed = held[self.start[held] + self.window.size <= newest[self.gid[held]]]
        self.emitted_at[passed] = _NEVER  # due at once once dirty; throttled again after that

    def _init(self, slots: np.ndarray, p: Partials, rows: np.ndarray, start: np.ndarray) -> None:
        self.gid[slots] = p.gid[rows]
        self.start[slots] = start
        for name in _INIT_FLOATS + _INIT_INTS:
            getattr(self, name)[slots] = getattr(p, name)[rows]
        self._floats[_SUM_SLICE, slots] = p.sums[:, rows]
        self.revision[slots] = 0
        self.final[slots] = False
        self.used[slots] = True
        self.emitted_at[slots] = _NEVER
        self.bumped[slots] = -1

    # -- closing and forgetting ----------------------------------------------------------

    def finalize(self, watermark: np.ndarray, highest: int | None = None) -> np.ndarray:
        """Make final every open window that ends at or before its instrument's watermark;
        returns their slots. `highest`: the largest watermark, if the caller knows it."""
        slots = self.open_slots
        if not len(slots):
            return slots
        if self._first_end is None:
            self._first_end = int(self.start[slots].min()) + self.window.size
        if highest is None:
            highest = int(watermark.max())
        if highest < self._first_end:  # none ends yet (most steps)
            return slots[:0]
        ending = self.start[slots] + self.window.size <= watermark[self.gid[slots]]
        done = slots[ending]
        if len(done):
            self.final[done] = True
            self.dirty[done] = True
            self._pending.append(done)
            self.open_slots = slots[~ending]
            self._check = True  # final windows are sent at once
            self._first_end = None
        return done

    def finalize_slots(self, slots: np.ndarray) -> None:
        """Make these windows final whatever the watermark says (restored final candles)."""
        self.final[slots] = True
        self.open_slots = self.open_slots[~self.final[self.open_slots]]
        self._check, self._first_end = True, None

    def forget(self, limit: np.ndarray) -> int:
        """Free final windows ending before `limit[gid]` (watermark minus horizon).

        A window with an unsent correction stays until it is sent: the batch that corrected
        it may also be the one that moved the watermark past it.
        """
        used = np.flatnonzero(self.used & self.final & ~self.dirty)
        old = used[self.start[used] + self.window.size <= limit[self.gid[used]]]
        for key in zip(self.gid[old].tolist(), self.start[old].tolist(), strict=True):
            del self.index[key]
        self.used[old] = False
        self.dirty[old] = False
        self._free.extend(old.tolist())
        return len(old)

    # -- snapshot (engine/snapshot.py) ----------------------------------------------------

    def state(self) -> dict[str, np.ndarray]:
        """Every column of the windows held (open and final), compacted to the used slots."""
        used = self.used
        return {name: getattr(self, name)[used] for name in (*_FLOATS, *_INTS, "final", "dirty")}

    def load_state(self, columns: dict[str, np.ndarray]) -> None:
        """Replace every window with those of `state()` (on a table that has none yet)."""
        n = len(columns["gid"])
        self.index.clear()
        self._free.clear()
        self._capacity = 0
        self._grow(max(1024, n))
        for name, column in columns.items():
            getattr(self, name)[:n] = column
        self.used[:n] = True
        self._free = list(range(self._capacity - 1, n - 1, -1))
        self.index.update(
            zip(zip(self.gid[:n].tolist(), self.start[:n].tolist(), strict=True), range(n),
                strict=True)
        )  # fmt: skip
        slots = np.arange(n, dtype=np.int64)
        self.open_slots = slots[~self.final[:n]]
        self._pending = [slots[self.dirty[:n]]]
        self._check, self._first_end = True, None

    def drop_before(self, cutoff: np.ndarray) -> None:
        """Forget windows starting before `cutoff[gid]`, open or final (used by restore)."""
        used = np.flatnonzero(self.used)
        old = used[self.start[used] < cutoff[self.gid[used]]]
        for key in zip(self.gid[old].tolist(), self.start[old].tolist(), strict=True):
            del self.index[key]
        self.used[old] = False
        self.dirty[old] = False
        self._free.extend(old.tolist())
        self.open_slots = self.open_slots[self.used[self.open_slots]]
        self._first_end = None

    # -- sending -------------------------------------------------------------------------

    def due(self, now: int, every: int, force: bool = False) -> np.ndarray:
        """Dirty windows to send now: final ones at once, open ones at most every `every`."""
        if not (force or self._check) and now - self._oldest_sent < every:
            # Nothing pending is new, final or sent `every` ago. What piles up is merged.
            if len(self._pending) > 64:
                pending = _sorted_unique(self._pending)
                self._pending = [pending[self.dirty[pending] & self.used[pending]]]
            return _NONE
        pending = _sorted_unique(self._pending)
        pending = pending[self.dirty[pending] & self.used[pending]]
        if force:
            ready = np.ones(len(pending), bool)
        else:
            ready = self.final[pending] | (now - self.emitted_at[pending] >= every)
            if not np.count_nonzero(ready):
                self._pending = [pending]
                held = len(pending)
                self._oldest_sent = int(self.emitted_at[pending].min()) if held else _NONE_HELD
                self._check = False
                return pending[:0]
        due = pending[ready]
        left = pending[~ready]
        self._pending = [left]
        # Those left are not final (those are all due) and were sent less than `every` ago.
        self._oldest_sent = int(self.emitted_at[left].min()) if len(left) else _NONE_HELD
        self._check = False
        self.dirty[due] = False
        self.emitted_at[due] = now
        return due

    def mark_dirty(self, only_open: bool = False) -> None:
        """Make every window held (or every open one) due to be sent again."""
        slots = self.open_slots if only_open else np.flatnonzero(self.used)
        self.dirty[slots] = True
        self._pending.append(slots)
        self._check = True

    def latest_open(self, gid: int) -> int | None:
        """The slot of the newest open window of an instrument, if any."""
        slots = self.open_slots[self.gid[self.open_slots] == gid]
        if not len(slots):
            return None
        return int(slots[np.argmax(self.start[slots])])

    def candles(
        self, slots: np.ndarray, names: Sequence[tuple[str, str]], now: int
    ) -> list[Candle]:
        """Candle records of `slots`, built column by column (this runs for every update);
        `names[gid]` is the (exchange, symbol) of an instrument id."""
        if not len(slots):
            return []
        volume = self.volume[slots]
        trades = self.trades[slots]
        close = self.close[slots]
        quote = self.quote_volume[slots]
        vwap = np.divide(quote, volume, out=close.copy(), where=volume > 0)
        name = self.window.name
        rows = zip(
            self.gid[slots].tolist(), self.start[slots].tolist(), self.open[slots].tolist(),
            self.high[slots].tolist(), self.low[slots].tolist(), close.tolist(),
            volume.tolist(), quote.tolist(), vwap.tolist(),
            (self.price_sum[slots] / trades).tolist(), trades.tolist(),
            self.buy_volume[slots].tolist(), self.sell_volume[slots].tolist(),
            self.open_seq[slots].tolist(), self.close_seq[slots].tolist(),
            self.final[slots].tolist(), self.revision[slots].tolist(), strict=True,
        )  # fmt: skip
        return [
            Candle(
                exchange=names[g][0],
                symbol=names[g][1],
                interval=name,
                start=start,
                open=o,
                high=h,
                low=lo,
                close=c,
                volume=v,
                quote_volume=q,
                vwap=vw,
                mean_price=mp,
                trades=n,
                buy_volume=bv,
                sell_volume=sv,
                first_seq=fs,
                last_seq=ls,
                final=final,
                revision=rev,
                updated_at=now,
            )
            for g, start, o, h, lo, c, v, q, vw, mp, n, bv, sv, fs, ls, final, rev in rows
        ]


def _sorted_unique(parts: list[np.ndarray]) -> np.ndarray:
    """The slots in `parts`, sorted, each once (`np.unique` without its per-call overhead; a
    single part is one `due` left, sorted and unique already)."""
    if len(parts) == 1:
        return parts[0]
    slots = np.concatenate(parts)
    slots.sort()
    if len(slots) > 1:
        slots = slots[np.concatenate(([True], slots[1:] != slots[:-1]))]
    return slots
