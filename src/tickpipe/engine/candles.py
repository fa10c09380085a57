"""The candle engine: trade batches in, candle updates out, equal to a batch recomputation.

Per batch the engine
1. rejects trades older than the instrument's watermark minus the correction horizon
   (they go to the dead-letter file: counted, never silently lost),
2. drops trades it has already accepted (same exchange, symbol and trade id),
3. aggregates the rest column-wise into one partial candle per (instrument, window) and
   merges those into the open windows, or into closed ones as a correction (revision + 1),
4. advances each instrument's watermark (max event time minus allowed lateness) and closes
   the windows that end at or before it.

`tick` runs the wall-clock idle timer, so a quiet symbol's windows close too, and sends
provisional updates at most every `provisional_every` per candle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tickpipe.engine.aggregate import SortedTrades, partials
from tickpipe.engine.dedupe import SeenTrades
from tickpipe.engine.rolling import MINUTE, RollingStats
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


class CandleState:
    """The running aggregate of one window; merging partials in any order gives the same result."""

    __slots__ = (
        "buy_volume", "close", "close_seq", "close_ts", "emitted_at", "final", "high", "low",
        "open", "open_seq", "open_ts", "price_sum", "quote_volume", "revision", "sell_volume",
        "start", "trades", "volume",
    )  # fmt: skip

    def __init__(self, start: int, row: tuple) -> None:
        (_, _, self.open, self.open_ts, self.open_seq, self.high, self.low, self.close,
         self.close_ts, self.close_seq, self.volume, self.quote_volume, self.price_sum,
         self.trades, self.buy_volume, self.sell_volume) = row  # fmt: skip
        self.start = start
        self.final = False
        self.revision = 0
        self.emitted_at = _NEVER

    def merge(self, row: tuple) -> None:
        (_, _, open_, open_ts, open_seq, high, low, close, close_ts, close_seq, volume,
         quote_volume, price_sum, trades, buy_volume, sell_volume) = row  # fmt: skip
        if (open_ts, open_seq) < (self.open_ts, self.open_seq):
            self.open, self.open_ts, self.open_seq = open_, open_ts, open_seq
        if (close_ts, close_seq) > (self.close_ts, self.close_seq):
            self.close, self.close_ts, self.close_seq = close, close_ts, close_seq
        self.high = max(self.high, high)
        self.low = min(self.low, low)
        self.volume += volume
        self.quote_volume += quote_volume
        self.price_sum += price_sum
        self.trades += trades
        self.buy_volume += buy_volume
        self.sell_volume += sell_volume

    def to_candle(self, instrument: Instrument, interval: str, now: int) -> Candle:
        return Candle(
            exchange=instrument.exchange,
            symbol=instrument.symbol,
            interval=interval,
            start=self.start,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
            quote_volume=self.quote_volume,
            vwap=self.quote_volume / self.volume if self.volume else self.close,
            mean_price=self.price_sum / self.trades,
            trades=self.trades,
            buy_volume=self.buy_volume,
            sell_volume=self.sell_volume,
            first_seq=self.open_seq,
            last_seq=self.close_seq,
            final=self.final,
            revision=self.revision,
            updated_at=now,
        )


@dataclass(slots=True)
class InstrumentState:
    """What the engine knows of one instrument: its windows and its latest trade."""

    instrument: Instrument
    open: list[dict[int, CandleState]]  # per window: start -> open window
    closed: list[dict[int, CandleState]]  # per window: start -> final, kept for corrections
    last_price: float = float("nan")
    last_ts: int = _NEVER
    last_recv_ts: int = _NEVER
    trades: int = 0


class CandleEngine:
    """Turns trade batches into candle updates; one instance per pipeline, no global state."""

    def __init__(self, config: EngineConfig) -> None:
        if not config.windows:
            raise ValueError("the engine needs at least one window")
        self.config = config
        self.windows = config.windows
        self.horizon = config.horizon
        self.states: list[InstrumentState] = []
        self.corrections = 0  # candles re-issued by late trades
        self._gid: dict[Instrument, int] = {}
        self._max_ts = np.zeros(0, np.int64)
        self._wm = np.zeros(0, np.int64)
        self._last_wall = np.zeros(0, np.int64)
        self._seen = SeenTrades()
        self._dirty: dict[tuple[int, int, int], CandleState] = {}
        self._finals: list[tuple[int, int, CandleState]] = []
        self._rolling = RollingStats()
        self._minute = next(
            (i for i, w in enumerate(self.windows) if w.size == MINUTE and not w.hopping), None
        )
        self._last_forget = _NEVER

    # -- input ---------------------------------------------------------------------------

    def process(self, batch: TradeBatch, now: int) -> EngineOutput:
        """Apply one batch at wall-clock time `now` and return what changed."""
        out = EngineOutput()
        if not len(batch):
            return out
        gid = self._gids(batch)
        too_late = batch.ts < self._wm[gid] - self.horizon
        on_time = np.flatnonzero(~too_late)
        if too_late.any():
            out.late = batch.take(too_late)
        ids = None if batch.trade_id is None else batch.trade_id[on_time]
        new = self._seen.filter_new(gid[on_time], batch.seq[on_time], ids, batch.ts[on_time])
        out.duplicates = int(len(on_time) - new.sum())
        keep = on_time[new]
        if not len(keep):
            return out
        out.accepted = batch.take(keep)
        acc = out.accepted
        trades = SortedTrades.build(gid[keep], acc)
        self._merge(trades)
        touched = self._note_latest(trades, now)
        lateness = self.config.allowed_lateness
        self._wm[touched] = np.maximum(self._wm[touched], self._max_ts[touched] - lateness)
        self._close(touched.tolist(), now, out)
        self._emit(now, out)
        return out

    def tick(self, now: int) -> EngineOutput:
        """The idle timer: advance the watermark of instruments quiet for `idle_timeout`."""
        out = EngineOutput()
        idle = np.flatnonzero(
            (now - self._last_wall >= self.config.idle_timeout) & (self._last_wall > _NEVER)
        )
        if len(idle):
            since = now - self._last_wall[idle]
            latest = self._max_ts.max()
            estimate = np.maximum(self._max_ts[idle] + since, latest)
            lateness = self.config.allowed_lateness
            self._wm[idle] = np.maximum(self._wm[idle], estimate - lateness)
            self._close([g for g in idle.tolist() if any(self.states[g].open)], now, out)
        self._emit(now, out)
        return out

    def flush(self, now: int) -> list[Candle]:
        """Every candle with unsent changes, now (at shutdown: the store gets the latest)."""
        out = EngineOutput()
        self._emit(now, out, force=True)
        return out.candles

    def restore(
        self,
        batch: TradeBatch,
        cutoff: dict[Instrument, int],
        revisions: dict[tuple[str, str, str, int], int],
        now: int,
    ) -> list[Candle]:
        """Rebuild state from stored trades after a restart and return the candles to rewrite.

        `batch` holds, per instrument, every stored trade at or after `cutoff[instrument]`,
        a window-aligned time before which no window can still change. Windows that start
        before it are dropped, because only part of their trades were loaded.
        """
        out = self.process(batch, now)
        for state in self.states:
            limit = cutoff.get(state.instrument, _NEVER)
            for per_window in (*state.open, *state.closed):
                for start in [s for s in per_window if s < limit]:
                    del per_window[start]
        self._dirty = {k: v for k, v in self._dirty.items() if k[2] >= cutoff.get(
            self.states[k[0]].instrument, _NEVER)}  # fmt: skip
        for g, state in enumerate(self.states):
            for w, window in enumerate(self.windows):
                for per_window in (state.open[w], state.closed[w]):
                    for start, candle in per_window.items():
                        key = (
                            state.instrument.exchange,
                            state.instrument.symbol,
                            window.name,
                            start,
                        )
                        candle.revision = revisions.get(key, 0)
                        self._dirty[(g, w, start)] = candle
        self._emit(now, out, force=True)
        return out.candles

    # -- views ---------------------------------------------------------------------------

    def watermark(self, instrument: Instrument) -> int | None:
        g = self._gid.get(instrument)
        return None if g is None or self._wm[g] <= _NEVER else int(self._wm[g])

    def current_candle(self, instrument: Instrument, window: int = 0) -> Candle | None:
        """The latest open window of `instrument` (the terminal view's "current candle")."""
        g = self._gid.get(instrument)
        if g is None or not self.states[g].open[window]:
            return None
        state = self.states[g].open[window]
        start = max(state)
        return state[start].to_candle(self.states[g].instrument, self.windows[window].name, 0)

    def open_windows(self) -> int:
        return sum(len(d) for s in self.states for d in s.open)

    # -- internals -----------------------------------------------------------------------

    def _gids(self, batch: TradeBatch) -> np.ndarray:
        codes = []
        for instrument in batch.instruments:
            g = self._gid.get(instrument)
            if g is None:
                g = self._gid[instrument] = len(self.states)
                empty = [{} for _ in self.windows]
                self.states.append(InstrumentState(instrument, empty, [{} for _ in self.windows]))
            codes.append(g)
        if len(self.states) > len(self._wm):
            grow = len(self.states) - len(self._wm)
            self._max_ts = np.concatenate([self._max_ts, np.full(grow, _NEVER, np.int64)])
            self._wm = np.concatenate([self._wm, np.full(grow, _NEVER, np.int64)])
            self._last_wall = np.concatenate([self._last_wall, np.full(grow, _NEVER, np.int64)])
        return np.array(codes, np.int64)[batch.instrument]

    def _merge(self, trades: SortedTrades) -> None:
        bumped: set[int] = set()
        for w, window in enumerate(self.windows):
            part = partials(trades, window.slide)
            for row in part.rows():
                g = row[0]
                state = self.states[g]
                for start in range(row[1], row[1] - window.size, -window.slide):
                    candle = state.open[w].get(start)
                    if candle is None:
                        candle = state.closed[w].get(start)
                        if candle is None:
                            state.open[w][start] = candle = CandleState(start, row)
                            self._dirty[(g, w, start)] = candle
                            continue
                    candle.merge(row)
                    if candle.final and id(candle) not in bumped:
                        bumped.add(id(candle))
                        candle.revision += 1
                        self.corrections += 1
                    self._dirty[(g, w, start)] = candle

    def _note_latest(self, trades: SortedTrades, now: int) -> np.ndarray:
        """Update per-instrument latest trade and max event time; return the touched ids."""
        last = np.flatnonzero(np.append(trades.gid[1:] != trades.gid[:-1], True))
        touched = trades.gid[last]
        counts = np.diff(np.append(-1, last))
        latest = zip(
            touched.tolist(), trades.ts[last].tolist(), trades.price[last].tolist(),
            trades.recv_ts[last].tolist(), counts.tolist(), strict=True,
        )  # fmt: skip
        for g, ts, price, recv_ts, n in latest:
            state = self.states[g]
            state.trades += n
            if ts >= state.last_ts:
                state.last_ts, state.last_price, state.last_recv_ts = ts, price, recv_ts
        self._max_ts[touched] = np.maximum(self._max_ts[touched], trades.ts[last])
        self._last_wall[touched] = now
        return touched

    def _close(self, gids: list[int], now: int, out: EngineOutput) -> None:
        horizon = self.horizon
        for g in gids:
            wm = int(self._wm[g])
            state = self.states[g]
            for w, window in enumerate(self.windows):
                open_ = state.open[w]
                closed = state.closed[w]
                for start in [s for s in open_ if s + window.size <= wm]:
                    candle = open_.pop(start)
                    candle.final = True
                    closed[start] = candle
                    self._dirty[(g, w, start)] = candle
                    if w == self._minute:
                        out.rolling.append(
                            self._rolling.on_minute_closed(g, state.instrument, candle)
                        )
                # Closed windows sit in closing order, oldest first: evict from the front.
                expired = []
                for start in closed:
                    if start + window.size + horizon > wm:
                        break
                    expired.append(start)
                for start in expired:
                    del closed[start]
                    self._dirty.pop((g, w, start), None)
        if now - self._last_forget >= 1_000_000:
            self._last_forget = now
            self._seen.forget_before(self._wm - horizon)

    def _emit(self, now: int, out: EngineOutput, force: bool = False) -> None:
        every = self.config.provisional_every
        sent = []
        for key, candle in self._dirty.items():
            if force or candle.final or now - candle.emitted_at >= every:
                g, w, _ = key
                candle.emitted_at = now
                out.candles.append(
                    candle.to_candle(self.states[g].instrument, self.windows[w].name, now)
                )
                sent.append(key)
        for key in sent:
            del self._dirty[key]
