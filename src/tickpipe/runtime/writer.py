"""The store writer: what the engine produced, written in large transactions on a thread.

DuckDB and the PostgreSQL driver release the GIL while they write, so storing overlaps
decoding and aggregation. The writer is bounded in pending trades (the engine stage waits
while it is `behind`), and counts submissions and how many of them are `durable`, which is
what a Kafka checkpoint releases offsets by.

On a store that keeps engine snapshots (`SnapshotStore`), every flush also stores, in the
same transaction, the newest engine snapshot handed over (`STATE`, when there is a new one)
and, per instrument, the oldest event time of the trades handed over after that snapshot
(`REPLAY_FROM`): a restart loads the snapshot and replays the stored trades from those times
on (the engine drops the ones the snapshot holds already as duplicates). Until its first
snapshot, a writer deletes any stored one: rows written without it would be missing from it.

A Kafka processor on a store that keeps offsets (`OffsetStore`) hands over the consumed
positions with `submit_offsets`, under `atomic()` with the trades they produced: each flush
then stores the positions matching exactly the rows it holds, in the same transaction.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import cast

import msgspec
import numpy as np

from tickpipe.records import Candle, PipelineMetric, RollingStat, TradeBatch
from tickpipe.stores.base import SnapshotStore, Store
from tickpipe.stores.flush import Flush, StreamOffsets

STATE = "state"  # the snapshot parts a SnapshotStore keeps
REPLAY_FROM = "replay_from"
_LATEST = np.iinfo(np.int64).max


def decode_replay_from(blob: bytes) -> dict[tuple[str, str], int]:
    """The `REPLAY_FROM` part: per (exchange, symbol), the oldest event time to replay."""
    rows = msgspec.msgpack.decode(blob, type=list[tuple[str, str, int]])
    return {(exchange, symbol): ts for exchange, symbol, ts in rows}


class StoreWriter:
    """Collects what the engine produced and writes it in large transactions on a thread.

    Trades and the candle updates they caused are handed over together and always land in
    the same transaction, so the file never holds a candle without its trades.
    """

    def __init__(self, store: Store, flush_every: float = 0.2, max_pending: int = 250_000):
        self.store = store
        self.flush_every = flush_every
        self.max_pending = max_pending
        self.error: BaseException | None = None
        self.written_trades = 0
        self.written_candles = 0
        self._pending_trades = 0
        # Submissions counted, and how many of them are written: a Kafka processor commits an
        # offset only once everything submitted before it is `durable`.
        self.submitted = 0
        self.durable = 0
        self._flush_now = False
        self._trades: list[TradeBatch] = []
        self._candles: list[Candle] = []
        self._rolling: list[RollingStat] = []
        self._events: list[tuple[int, str, str, str]] = []
        self._metrics: list[PipelineMetric] = []
        self._offsets: StreamOffsets | None = None  # handed over, not written yet
        self._keeps_snapshots = isinstance(store, SnapshotStore)
        self._snapshot: bytes | None = None  # handed over, not written yet
        self._has_snapshot = False
        self._replay_from: dict[tuple[str, str], int] = {}  # trades handed over after it
        self._replay_from_changed = False
        self._stale_deleted = False
        # Called on the writer thread after each flush: (trade batches, candles, seconds).
        self.on_written: Callable[[list[TradeBatch], int, float], None] | None = None
        # Called on the writer thread with what each flush committed (the lake follows the
        # store: it never holds what the store may still lose).
        self.after_write: list[Callable[[list[TradeBatch], list[Candle]], None]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="tickpipe-store", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending_trades

    def submit(
        self,
        trades: TradeBatch | None = None,
        candles: list[Candle] | tuple = (),
        rolling: list[RollingStat] | tuple = (),
        events: list[tuple[int, str, str, str]] | tuple = (),
        metrics: list[PipelineMetric] | tuple = (),
        snapshot: bytes | None = None,
    ) -> None:
        """Hand over one engine step's results; `snapshot`: the engine's state after them."""
        if self.error is not None:
            raise RuntimeError(f"the store writer failed: {self.error}") from self.error
        with self._cond:
            if trades is not None and len(trades):
                self._trades.append(trades)
                self._pending_trades += len(trades)
            self._candles.extend(candles)
            self._rolling.extend(rolling)
            self._events.extend(events)
            self._metrics.extend(metrics)
            if snapshot is not None:
                self._snapshot, self._has_snapshot = snapshot, True
                self._replay_from, self._replay_from_changed = {}, True
            elif self._has_snapshot and trades is not None and len(trades):
                self._note_replay_from(trades)
            self.submitted += 1
            if self._pending_trades >= self.max_pending:
                self._cond.notify_all()

    def atomic(self) -> AbstractContextManager[bool]:
        """Hold the writer's lock (reentrant): no flush takes what is handed over inside
        until it is all handed over, e.g. trades and the consumed offsets they came from."""
        return self._cond

    def submit_offsets(self, offsets: StreamOffsets) -> None:
        """The consumed positions after what was submitted so far: stored with it (newest
        position per partition wins)."""
        with self._cond:
            pending = self._offsets
            if pending is not None and (pending.group, pending.topic) == (
                offsets.group, offsets.topic
            ):  # fmt: skip
                offsets = StreamOffsets(
                    offsets.group, offsets.topic, {**pending.positions, **offsets.positions}
                )
            self._offsets = offsets
            self.submitted += 1

    def forget_offsets(self, partitions: set[int]) -> None:
        """Partitions given away: their positions are not stored from here any more."""
        with self._cond:
            pending = self._offsets
            if pending is not None:
                kept = {p: o for p, o in pending.positions.items() if p not in partitions}
                self._offsets = StreamOffsets(pending.group, pending.topic, kept) if kept else None

    def resume_snapshot(self, replay_from: dict[tuple[str, str], int]) -> None:
        """Go on from the snapshot the store holds, with the trades stored after it from
        `replay_from` on: the engine was restored from both (no new snapshot is needed)."""
        with self._cond:
            self._has_snapshot = True
            self._replay_from, self._replay_from_changed = dict(replay_from), False

    def _note_replay_from(self, trades: TradeBatch) -> None:
        """Lower each instrument's replay time to the oldest trade of `trades` (under the lock)."""
        oldest = np.full(len(trades.instruments), _LATEST, np.int64)
        np.minimum.at(oldest, trades.instrument, trades.ts)
        replay = self._replay_from
        for instrument, ts in zip(trades.instruments, oldest.tolist(), strict=True):
            key = (instrument.exchange, instrument.symbol)
            if ts < replay.get(key, _LATEST):
                replay[key] = ts
                self._replay_from_changed = True

    def _snapshot_parts(self) -> dict[str, bytes | None]:
        """The snapshot parts the next write stores (under the lock)."""
        if not self._keeps_snapshots:
            return {}
        if not self._has_snapshot:
            if self._stale_deleted:
                return {}
            self._stale_deleted = True
            return {STATE: None, REPLAY_FROM: None}
        parts: dict[str, bytes | None] = {}
        if self._snapshot is not None:
            parts[STATE], self._snapshot = self._snapshot, None
        if self._replay_from_changed:
            rows = [(*key, ts) for key, ts in self._replay_from.items()]
            parts[REPLAY_FROM] = msgspec.msgpack.encode(rows)
            self._replay_from_changed = False
        return parts

    def flush_soon(self) -> None:
        """Write what is pending as soon as the thread is free, without waiting for it: a
        caller whose input went quiet says so, and what it handed over is stored now rather
        than at the next `flush_every` (under a steady load, submissions made while one write
        runs go together in the next: the transactions grow with the load by themselves)."""
        with self._cond:
            if self._trades or self._candles or self._rolling or self._events or self._metrics:
                self._flush_now = True
                self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Write what is pending now and wait for it; False if `timeout` passed first."""
        with self._cond:
            target = self.submitted
            self._flush_now = True
            self._cond.notify_all()
            return self._cond.wait_for(
                lambda: self.durable >= target or self.error is not None or self._stop, timeout
            )

    def close(self) -> None:
        """Write everything still pending and stop the thread."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(f"the store writer failed: {self.error}") from self.error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: (
                        self._stop or self._flush_now or self._pending_trades >= self.max_pending
                    ),
                    timeout=self.flush_every,
                )
                self._flush_now = False
                upto = self.submitted
                trades, self._trades = self._trades, []
                candles, self._candles = self._candles, []
                rolling, self._rolling = self._rolling, []
                events, self._events = self._events, []
                metrics, self._metrics = self._metrics, []
                offsets, self._offsets = self._offsets, None
                snapshot = self._snapshot_parts() if trades or candles or self._snapshot else {}
                stopping = self._stop
            try:
                if trades or candles or rolling or events or metrics or snapshot or offsets:
                    started = time.perf_counter()
                    if snapshot or offsets:  # only ever on a SnapshotStore
                        cast(SnapshotStore, self.store).write_flush(
                            Flush.of(trades, candles, rolling, events, metrics, snapshot, offsets)
                        )
                    else:
                        self.store.write(trades, candles, rolling, events, metrics)
                    self.written_trades += sum(len(t) for t in trades)
                    self.written_candles += len(candles)
                    if self.on_written is not None:
                        self.on_written(trades, len(candles), time.perf_counter() - started)
                    for hook in self.after_write:
                        hook(trades, candles)
            except BaseException as exc:
                self.error = exc
                return
            finally:
                with self._cond:
                    self._pending_trades -= sum(len(t) for t in trades)
                    if self.error is None:
                        self.durable = upto
                    self._cond.notify_all()
            if stopping:
                return
