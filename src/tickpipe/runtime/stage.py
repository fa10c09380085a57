"""The engine stage: one engine step (a batch, an idle tick, the final flush) and where its
results go.

Every runner drives the same stage: the embedded pipeline's engine loop, the Kafka processor
(live, and without a writer while it replays what is stored already) and the benchmark. Each
step's `EngineOutput` goes to the store writer, if the stage has one, and then to every
`on_output` hook (the live hub, the candles topic). `restore` rebuilds open windows after a
restart or a Kafka (re)assignment, for both the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import msgspec

from tickpipe.deadletter import DeadLetters
from tickpipe.engine.candles import CandleEngine, EngineOutput
from tickpipe.records import TradeBatch
from tickpipe.runtime.clock import SYSTEM_CLOCK, Clock
from tickpipe.runtime.writer import StoreWriter
from tickpipe.stores.base import Store

TICK_SECONDS = 0.1  # the idle tick: windows of quiet instruments close on time


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
    ) -> None:
        self.engine = engine
        self.writer = writer
        self.dead_letters = dead_letters
        self.clock = clock
        self.counters = Counters(started_s=clock.monotonic_s())
        self.on_batch: Callable[[TradeBatch], None] | None = None  # the monitor's, if any
        # Called with each step's output after the writer has it (a replaying stage: never).
        self.on_output: list[OutputHook] = []

    @property
    def behind(self) -> bool:
        """The store writer holds more than its bound: stop taking input until it catches up."""
        w = self.writer
        return w is not None and w.pending > w.max_pending and w.error is None

    def process(self, batch: TradeBatch) -> None:
        if self.on_batch is not None:
            self.on_batch(batch)
        self._apply(self.engine.process(batch, self.clock.now_us()))

    def tick(self) -> None:
        self._apply(self.engine.tick(self.clock.now_us()))

    def finish(self) -> None:
        """Send every candle with unsent changes (at shutdown)."""
        self._apply(EngineOutput(candles=self.engine.flush(self.clock.now_us())))

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
        self._hand_on(EngineOutput(candles=candles))

    def _apply(self, out: EngineOutput) -> None:
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
        self._hand_on(out)

    def _hand_on(self, out: EngineOutput) -> None:
        if self.writer is None:
            return
        if out.accepted is not None or out.candles or out.rolling:
            self.writer.submit(out.accepted, out.candles, out.rolling)
        for hook in self.on_output:
            hook(out)
