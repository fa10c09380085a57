"""The engine stage: one engine step (a batch, an idle tick, the final flush) and where its
results go.

Every runner drives the same stage: the embedded pipeline's engine loop, the Kafka processor
(live, and without a writer while it replays what is stored already) and the benchmark. Each
step's `EngineOutput` goes to the store writer, if the stage has one, and then to every
`on_output` hook (the live hub, the candles topic). `restore` rebuilds open windows after a
restart or a Kafka (re)assignment, for both the same way, from the stored trades of the
correction horizon. `restore_snapshot` is the embedded restart's fast path: with
`snapshot_every_s` set, the stage hands the writer an engine snapshot at most that often
(and after a replay restore and at shutdown), which a `SnapshotStore` keeps with the rows; a
restart loads it and replays only the trades stored after it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field

import msgspec

from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine, EngineOutput
from tickpipe.engine.snapshot import SnapshotError, load_snapshot, take_snapshot
from tickpipe.records import Candle, TradeBatch
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.runtime.quality import QualityMeter
from tickpipe.runtime.writer import REPLAY_FROM, STATE, StoreWriter, decode_replay_from
from tickpipe.stores.base import SnapshotStore, Store

TICK_SECONDS = 0.1  # the idle tick: windows of quiet instruments close on time
# A live runner steps the engine at most once per this long while trades keep coming (the
# latency it may add), not once per delivery: a step's cost hardly depends on its size.
STEP_BUDGET_S = 0.001


@dataclass
class Counters:
    """What the engine stage has seen since start-up."""

    trades: int = 0  # accepted, handed to the store
    candles: int = 0  # candle updates, provisional and final
    late_rejected: int = 0  # behind the correction horizon: dead-lettered
    duplicates: int = 0
    started_s: float = field(default_factory=SYSTEM_CLOCK.monotonic_s)


OutputHook = Callable[[EngineOutput], None]


class EngineStage:
    """An engine step in, its results handed to the store writer and the output hooks.

    `writer=None` makes a replaying stage: the engine rebuilds its windows from trades the
    store holds already, and nothing is written or published.
    """

    def __init__(
        self,
        engine: CandleEngine,
        writer: StoreWriter | None,
        dead_letters: DeadLetters,
        clock: Clock = SYSTEM_CLOCK,
        snapshot_every_s: float | None = None,
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.dead_letters = dead_letters
        self.clock = clock
        self.counters = Counters(started_s=clock.monotonic_s())
        self.on_batch: Callable[[TradeBatch], None] | None = None  # the monitor's, if any
        # Called with each step's output after the writer has it (a replaying stage: never).
        self.on_output: list[OutputHook] = []
        # Candles made from each step's candles (the composite), stored and published with
        # them; None: none. Restored candles go through it too.
        self.derive: Callable[[list[Candle]], list[Candle]] | None = None
        # Data quality per venue of the live batches, where the runner reads it (embedded).
        self.quality: QualityMeter | None = None
        self.snapshot_every_s = snapshot_every_s
        self._next_snapshot_s = clock.monotonic_s()

    @property
    def behind(self) -> bool:
        """The store writer holds more than its bound: stop taking input until it catches up."""
        w = self.writer
        return w is not None and w.pending > w.max_pending and w.error is None

    def process(self, batch: TradeBatch) -> None:
        if self.on_batch is not None:
            self.on_batch(batch)
        if self.quality is not None and self.writer is not None:
            self.quality.observe(batch, self.clock.now_us())
        self._apply(self.engine.process(batch, self.clock.now_us()))

    def tick(self) -> None:
        self._apply(self.engine.tick(self.clock.now_us()))

    def finish(self) -> None:
        """Send every candle with unsent changes (at shutdown)."""
        self._apply(EngineOutput(candles=self.engine.flush(self.clock.now_us())), snapshot=True)

    def restore(
        self,
        store: Store,
        cutoff: dict[tuple[str, str], int],
        batches: Iterable[TradeBatch] = (),
    ) -> None:
        """Rebuild the open windows and hand their candles on as one output.

        `cutoff`: per (exchange, symbol), the start of the oldest window still open; windows
        before it are dropped. `batches`: the stored trades since the cut-off (an embedded
        restart reads them from the store; a Kafka replay fed them through a replaying stage
        already). Stored revisions and finals carry over, so a restored candle never goes
        back to an older revision or reopens.
        """
        if not cutoff:
            return
        since = min(cutoff.values())
        candles = self.engine.restore(
            batches, cutoff, store.revisions(since), self.clock.now_us(), store.finals(since)
        )
        self._hand_on(EngineOutput(candles=candles), snapshot=True)

    def restore_snapshot(
        self,
        store: SnapshotStore,
        replay: Callable[[Iterable[TradeBatch]], Iterable[TradeBatch]] = iter,
    ) -> bool:
        """Load the stored engine snapshot, replay the trades stored after it (through
        `replay`, which may stop it) and hand on, as one output, the candles of every open
        window and of every window the replay changed (final ones are stored as held).

        False when the store holds no snapshot; a `SnapshotError` when it holds one that
        cannot be used (the engine is then as new: the caller restores by `restore`).
        """
        parts = store.load_snapshot()
        if STATE not in parts:
            return False
        try:
            replay_from = decode_replay_from(parts.get(REPLAY_FROM, b"\x90"))
        except msgspec.DecodeError as exc:
            raise SnapshotError(f"unreadable replay times ({exc})") from None
        engine, now = self.engine, self.clock.now_us()
        load_snapshot(engine, parts[STATE], now)
        batches = store.restore_batches(replay_from) if replay_from else iter(())
        changed = []
        try:
            for batch in replay(batches):  # their trades the snapshot holds are duplicates
                changed += engine.process(batch, now).candles
        finally:
            if isinstance(batches, Generator):
                batches.close()  # the store's reader ends now, not whenever it is collected
        # Final windows are stored as the engine holds them; an open one may have been closed
        # (by the idle timer) or sent since the snapshot, and is sent again.
        since = engine.oldest_open_start()
        marks = (store.revisions(since), store.finals(since)) if since is not None else ({}, set())
        candles = engine.restore((), {}, marks[0], now, marks[1], finals_stored=True)
        if self.writer is not None and self.snapshot_every_s is not None:
            # The stored snapshot and the trades after it are this engine: no new one yet.
            self.writer.resume_snapshot(replay_from)
            self._next_snapshot_s = self.clock.monotonic_s() + self.snapshot_every_s
        self._hand_on(EngineOutput(candles=changed + candles))
        return True

    def _apply(self, out: EngineOutput, snapshot: bool = False) -> None:
        counters = self.counters
        if out.late is not None:
            counters.late_rejected += len(out.late)
            for trade in out.late.to_trades():
                self.dead_letters.write(
                    trade.source, "late: older than the correction horizon",
                    msgspec.json.encode(trade),
                )  # fmt: skip
        counters.duplicates += out.duplicates
        if out.accepted is not None:
            counters.trades += len(out.accepted)
        counters.candles += len(out.candles)
        self._hand_on(out, snapshot)

    def _hand_on(self, out: EngineOutput, snapshot: bool = False) -> None:
        """To the writer (with a snapshot when due, or forced by `snapshot`), then the hooks."""
        if self.writer is None:
            return
        if self.derive is not None and out.candles:
            out.candles = out.candles + self.derive(out.candles)
        state = self._snapshot_due(snapshot)
        if out.accepted is not None or out.candles or out.rolling or state is not None:
            self.writer.submit(out.accepted, out.candles, out.rolling, snapshot=state)
        for hook in self.on_output:
            hook(out)

    def _snapshot_due(self, force: bool) -> bytes | None:
        """The engine snapshot when snapshots are on and one is due (or `force`d)."""
        if self.snapshot_every_s is None:
            return None
        now_s = self.clock.monotonic_s()
        if not force and now_s < self._next_snapshot_s:
            return None
        self._next_snapshot_s = now_s + self.snapshot_every_s
        return take_snapshot(self.engine)
