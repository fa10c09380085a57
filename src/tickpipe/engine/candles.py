"""The candle engine: trade batches in, candle updates out, equal to a batch recomputation.

Per batch the engine
1. rejects trades older than the instrument's watermark minus the correction horizon
   (they go to the dead-letter file: counted, never silently lost),
2. drops trades it has already accepted (same exchange, symbol and trade id),
3. aggregates the rest column-wise into one partial candle per (instrument, window) and
   merges those into the open windows, or into closed ones as a correction (revision + 1),
4. advances each instrument's watermark (max event time minus allowed lateness) and closes
   the windows that end at or before it. A future-stamped trade (event time more than
   `future_tolerance` after its local receipt: a venue's clock ahead, a bad feed) is kept in
   its candle but counted and left out of the watermark, so it cannot close windows early.

`tick` runs the wall-clock idle timer, so a quiet symbol's windows close too, and sends
provisional updates at most every `provisional_every` per candle; but a window whose
instrument has opened a later one (it has passed) sends its pending update in that step.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from tickpipe.engine.aggregate import SortedTrades, partials, sort_order
from tickpipe.engine.dedupe import SeenTrades
from tickpipe.engine.rolling import MINUTE, MinuteSnapshot, RollingStats
from tickpipe.engine.table import WindowTable
from tickpipe.engine.windows import Window
from tickpipe.records import Candle, Instrument, RollingStat, TradeBatch

_NEVER = np.iinfo(np.int64).min // 4


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings, all times in microseconds. The horizon defaults to the largest window."""

    windows: tuple[Window, ...]
    allowed_lateness: int = 2_000_000
    correction_horizon: int | None = None
    idle_timeout: int = 2_000_000
    provisional_every: int = 250_000
    future_tolerance: int = 5_000_000  # event time may lead local receipt by this much

    @property
    def horizon(self) -> int:
        if self.correction_horizon is not None:
            return self.correction_horizon
        return max(w.size for w in self.windows)


@dataclass
class EngineOutput:
    """What one call produced: trades to store, candle updates, and trades beyond the horizon."""

    accepted: TradeBatch | None = None
    late: TradeBatch | None = None
    candles: list[Candle] = field(default_factory=list)
    rolling: list[RollingStat] = field(default_factory=list)
    duplicates: int = 0


@dataclass(slots=True)
class InstrumentState:
    """The latest trade of one instrument (its windows live in the window tables)."""

    instrument: Instrument
    last_price: float = float("nan")
    last_ts: int = _NEVER
    last_recv_ts: int = _NEVER
    trades: int = 0
    # Since start-up (not in the snapshot): what the data-quality view shows per venue.
    duplicates: int = 0  # dropped as already accepted
    future: int = 0  # accepted, but stamped beyond `future_tolerance` after receipt


def _key(instrument: Instrument) -> tuple[str, str]:
    """One instrument per (exchange, symbol), however each feed spells the raw symbol."""
    return (instrument.exchange, instrument.symbol)


class CandleEngine:
    """Turns trade batches into candle updates; one instance per pipeline, no global state."""

    def __init__(self, config: EngineConfig) -> None:
        if not config.windows:
            raise ValueError("the engine needs at least one window")
        self.config = config
        self.windows = config.windows
        self.horizon = config.horizon
        self.states: list[InstrumentState] = []
        self.tables = [WindowTable(w) for w in self.windows]
        self.corrections = 0  # final candles re-issued by late trades
        self._gid: dict[tuple[str, str], int] = {}  # (exchange, symbol): one instrument
        self._names: list[tuple[str, str]] = []  # per instrument id: (exchange, symbol)
        self._venue: list[int] = []  # per instrument: an id of its exchange (its clock)
        self._venues: dict[str, int] = {}
        self._max_ts = np.zeros(0, np.int64)
        self._wm = np.zeros(0, np.int64)
        self._last_wall = np.zeros(0, np.int64)
        self._seen = SeenTrades()
        self._rolling = RollingStats()
        self._minute = next(
            (t for t in self.tables if t.window.size == MINUTE and not t.window.hopping), None
        )
        self._batches = 0
        self._last_forget = _NEVER
        self._last_instruments: tuple[list[Instrument], np.ndarray] = ([], np.zeros(0, np.int64))

    # -- input ---------------------------------------------------------------------------

    def process(self, batch: TradeBatch, now: int) -> EngineOutput:
        """Apply one batch at wall-clock time `now` and return what changed."""
        out = EngineOutput()
        if not len(batch):
            return out
        gid = self._gids(batch)
        too_late = batch.ts < self._wm[gid] - self.horizon
        # Sorted first: then ids arrive at the dedupe nearly in order, and cheap to sort.
        if np.count_nonzero(too_late):
            out.late = batch.take(too_late)
            on_time = (~too_late).nonzero()[0]
            idx = on_time[sort_order(gid[on_time], batch.ts[on_time], batch.seq[on_time])]
        else:  # the live case: every trade is on time
            idx = sort_order(gid, batch.ts, batch.seq)
        ids = None if batch.trade_id is None else batch.trade_id[idx]
        new = self._seen.filter_new(gid[idx], batch.seq[idx], ids, batch.ts[idx])
        out.duplicates = int(len(idx) - new.sum())
        if out.duplicates:
            self._count(gid[idx[~new]], "duplicates")
        keep = idx[new]
        if not len(keep):
            return out
        out.accepted = batch.take(keep)
        trades = SortedTrades.of(gid[keep], out.accepted)
        self._batches += 1
        for table in self.tables:
            self.corrections += table.merge(partials(trades, table.window.slide), self._batches)
        touched = self._note_latest(trades, now)
        lateness = self.config.allowed_lateness
        self._wm[touched] = np.maximum(self._wm[touched], self._max_ts[touched] - lateness)
        self._close(now, out)
        self._emit(now, out)
        return out

    def tick(self, now: int) -> EngineOutput:
        """The idle timer: advance the watermark of instruments quiet for `idle_timeout`."""
        out = EngineOutput()
        idle = np.flatnonzero(
            (now - self._last_wall >= self.config.idle_timeout) & (self._last_wall > _NEVER)
        )
        if len(idle):
            # A quiet symbol's clock runs on by the wall time since its last trade, and at
            # least as far as the newest trade of its own exchange (in a fast replay the
            # venue's other symbols say how far event time has come; another venue's clock
            # may be off and must not decide).
            since = now - self._last_wall[idle]
            venue = np.array(self._venue, np.int64)
            venue_max = np.full(len(self._venues), _NEVER, np.int64)
            np.maximum.at(venue_max, venue, self._max_ts)
            estimate = np.maximum(self._max_ts[idle] + since, venue_max[venue[idle]])
            lateness = self.config.allowed_lateness
            self._wm[idle] = np.maximum(self._wm[idle], estimate - lateness)
            self._close(now, out)
        self._emit(now, out)
        return out

    def restart_idle_timers(self, now: int) -> None:
        """Count every instrument's idle time from wall-clock time `now`: the input was away
        (the brokers were down), and that time was not quiet (the trades of it come later)."""
        self._last_wall = np.where(self._last_wall > _NEVER, now, _NEVER).astype(np.int64)

    def flush(self, now: int) -> list[Candle]:
        """Every candle with unsent changes, now (at shutdown: the store gets the latest)."""
        out = EngineOutput()
        self._emit(now, out, force=True)
        return out.candles

    def restore(
        self,
        batches: TradeBatch | Iterable[TradeBatch],
        cutoff: dict[tuple[str, str], int],
        revisions: dict[tuple[str, str, str, int], int],
        now: int,
        finals: set[tuple[str, str, str, int]] | frozenset = frozenset(),
        finals_stored: bool = False,
    ) -> list[Candle]:
        """Rebuild state from stored trades after a restart and return the candles to rewrite.

        `batches` hold, per (exchange, symbol), every stored trade at or after its `cutoff`,
        a window-aligned time before which no window can still change. Windows that start
        before it are dropped, because only part of their trades were loaded. Windows stored
        as final (`finals`, e.g. closed by the idle timer before the crash) stay final, and
        stored revisions carry over (a window's own higher revision, restored from a
        snapshot, stays). `finals_stored`: the store holds every final window as the engine
        does (it kept the engine's snapshot with them), so only open windows are sent again.
        """
        for batch in [batches] if isinstance(batches, TradeBatch) else batches:
            self.process(batch, now)
        limits = np.array([cutoff.get(_key(s.instrument), _NEVER) for s in self.states], np.int64)
        for table in self.tables:
            table.drop_before(limits)
            name = table.window.name
            final = []
            for (g, start), slot in table.index.items():
                key = (*_key(self.states[g].instrument), name, start)
                table.revision[slot] = max(int(table.revision[slot]), revisions.get(key, 0))
                if key in finals:
                    final.append(slot)
            table.finalize_slots(np.array(final, np.int64))
            table.mark_dirty(only_open=finals_stored)
        out = EngineOutput()
        self._emit(now, out, force=True)
        return out.candles

    # -- snapshot (engine/snapshot.py) ----------------------------------------------------

    def state(self) -> dict[str, object]:
        """Everything a restarted engine needs to go on exactly as this one would."""
        states = self.states
        return {
            "instruments": [[s.instrument.exchange, s.instrument.symbol, s.instrument.raw_symbol]
                            for s in states],
            "last_price": np.array([s.last_price for s in states], np.float64),
            "last_ts": np.array([s.last_ts for s in states], np.int64),
            "last_recv_ts": np.array([s.last_recv_ts for s in states], np.int64),
            "trades": np.array([s.trades for s in states], np.int64),
            "max_ts": self._max_ts.copy(), "watermark": self._wm.copy(),
            "active": self._last_wall > _NEVER,
            "corrections": self.corrections, "batches": self._batches,
            "tables": [t.state() for t in self.tables],
            "seen": self._seen.state(), "rolling": self._rolling.state(),
        }  # fmt: skip

    def load_state(self, state: dict, now: int) -> None:
        """Take over what `state()` of an engine with the same windows held, at wall-clock
        time `now` (the idle timer of every instrument that had trades starts anew, as after
        a replay)."""
        names = state["instruments"]
        self._gids_of([Instrument(*name) for name in names])
        for s, price, ts, recv_ts, n in zip(
            self.states, state["last_price"].tolist(), state["last_ts"].tolist(),
            state["last_recv_ts"].tolist(), state["trades"].tolist(), strict=True,
        ):  # fmt: skip
            s.last_price, s.last_ts, s.last_recv_ts, s.trades = price, ts, recv_ts, n
        self._max_ts = state["max_ts"].copy()
        self._wm = state["watermark"].copy()
        self._last_wall = np.where(state["active"], now, _NEVER).astype(np.int64)
        self.corrections, self._batches = state["corrections"], state["batches"]
        for table, columns in zip(self.tables, state["tables"], strict=True):
            table.load_state(columns)
        self._seen.load_state(state["seen"])
        self._rolling.load_state(state["rolling"])

    def oldest_open_start(self) -> int | None:
        """The start of the oldest open window (None: none is open)."""
        starts = [int(t.start[t.open_slots].min()) for t in self.tables if len(t.open_slots)]
        return min(starts, default=None)

    # -- views ---------------------------------------------------------------------------

    def watermark(self, instrument: Instrument) -> int | None:
        g = self._gid.get(_key(instrument))
        return None if g is None or self._wm[g] <= _NEVER else int(self._wm[g])

    def current_candle(self, instrument: Instrument, window: int = 0) -> Candle | None:
        """The newest open window of `instrument` (the terminal view's "current candle")."""
        g = self._gid.get(_key(instrument))
        table = self.tables[window]
        slot = None if g is None else table.latest_open(g)
        return None if slot is None else self._candles(table, np.array([slot]), 0)[0]

    def open_windows(self) -> int:
        return sum(len(t.open_slots) for t in self.tables)

    def remembered_trades(self) -> int:
        """How many trade ids are held to recognise a resend (bounded by the horizon)."""
        return len(self._seen)

    # -- internals -----------------------------------------------------------------------

    def _gids(self, batch: TradeBatch) -> np.ndarray:
        # A source hands over the same instrument list with every batch (its index's): the
        # codes of the last one are kept while it is equal (an identity check per element).
        last, codes = self._last_instruments
        if batch.instruments != last:
            codes = self._gids_of(batch.instruments)
            self._last_instruments = (list(batch.instruments), codes)
        return codes[batch.instrument]

    def _gids_of(self, instruments: list[Instrument]) -> np.ndarray:
        """The instrument ids of `instruments`, new ones numbered on."""
        codes = []
        for instrument in instruments:
            g = self._gid.get(_key(instrument))
            if g is None:
                g = self._gid[_key(instrument)] = len(self.states)
                self.states.append(InstrumentState(instrument))
                self._names.append(_key(instrument))
                self._venue.append(self._venues.setdefault(instrument.exchange, len(self._venues)))
            codes.append(g)
        if len(self.states) > len(self._wm):
            grow = np.full(len(self.states) - len(self._wm), _NEVER, np.int64)
            self._max_ts = np.concatenate([self._max_ts, grow])
            self._wm = np.concatenate([self._wm, grow])
            self._last_wall = np.concatenate([self._last_wall, grow])
        return np.array(codes, np.int64)

    def _note_latest(self, trades: SortedTrades, now: int) -> np.ndarray:
        """Update per-instrument latest trade and max event time; return the touched ids.

        Future-stamped trades count, but neither as the latest trade nor in the max event
        time (the watermark): trades are in (instrument, ts) order, so the latest one that is
        not future-stamped is the last of its run once those are masked out.
        """
        gid = trades.gid
        ends = np.concatenate(((gid[1:] != gid[:-1]).nonzero()[0], [len(gid) - 1]))
        touched = gid[ends]
        starts = np.concatenate(([0], ends[:-1] + 1))
        counts = ends - starts + 1
        future = trades.ts > trades.recv_ts + self.config.future_tolerance
        last = ends
        if np.count_nonzero(future):
            self._count(trades.gid[future], "future")
            position = np.where(future, -1, np.arange(len(future)))
            last = np.maximum.reduceat(position, starts)  # -1: every trade of the run is
        has = last >= 0
        at = np.where(has, last, 0)
        latest = zip(
            touched.tolist(), trades.ts[at].tolist(), trades.price[at].tolist(),
            trades.recv_ts[at].tolist(), counts.tolist(), has.tolist(), strict=True,
        )  # fmt: skip
        for g, ts, price, recv_ts, n, ok in latest:
            state = self.states[g]
            state.trades += n
            if ok and ts >= state.last_ts:
                state.last_ts, state.last_price, state.last_recv_ts = ts, price, recv_ts
        newest = np.where(has, trades.ts[at], _NEVER)
        self._max_ts[touched] = np.maximum(self._max_ts[touched], newest)
        self._last_wall[touched] = now
        return touched

    def _count(self, gids: np.ndarray, counter: str) -> None:
        """Add one per trade of `gids` to each instrument's `counter` (duplicates, future)."""
        counts = np.bincount(gids, minlength=len(self.states))
        for g in np.flatnonzero(counts).tolist():
            state = self.states[g]
            setattr(state, counter, getattr(state, counter) + int(counts[g]))

    def _close(self, now: int, out: EngineOutput) -> None:
        highest = int(self._wm.max()) if len(self._wm) else _NEVER
        for table in self.tables:
            closed = table.finalize(self._wm, highest)
            if table is self._minute and len(closed):
                # By (start, instrument): the same order however the slots were allocated
                # (a restored engine numbers them anew).
                order = np.lexsort((table.gid[closed], table.start[closed]))
                for slot in closed[order].tolist():
                    g = int(table.gid[slot])
                    minute = MinuteSnapshot(
                        start=int(table.start[slot]), close=float(table.close[slot]),
                        high=float(table.high[slot]), low=float(table.low[slot]),
                        price_sum=float(table.price_sum[slot]), trades=int(table.trades[slot]),
                    )  # fmt: skip
                    out.rolling.append(
                        self._rolling.on_minute_closed(g, self.states[g].instrument, minute)
                    )
        if now - self._last_forget >= 1_000_000:
            self._last_forget = now
            limit = self._wm - self.horizon
            for table in self.tables:
                table.forget(limit)
            self._seen.forget_before(limit)

    def _emit(self, now: int, out: EngineOutput, force: bool = False) -> None:
        every = self.config.provisional_every
        for table in self.tables:
            out.candles.extend(self._candles(table, table.due(now, every, force), now))

    def _candles(self, table: WindowTable, slots: np.ndarray, now: int) -> list[Candle]:
        return table.candles(slots, self._names, now)
