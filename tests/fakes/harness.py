"""Runs a source against a fake exchange and keeps everything it handed out.

Every connector's tests need the same harness: a `SourceContext` that records batches and
events (with a gate that, closed, acts as a full transport), waits with a timeout, and a run
that must end only by cancellation: a source that stops by itself or crashes fails the test.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from tickpipe.deadletter import DeadLetters
from tickpipe.records import Disconnect, Gap, Trade, TradeBatch
from tickpipe.sources import Source, SourceContext


def observed(trades: list[Trade], *, ids: bool = True) -> list[tuple]:
    """What a connector's tests compare with the trades the fake exchange made: every field
    but `recv_ts` (the local clock). `ids=False` leaves out `trade_id` and `seq` too, for feeds
    that carry no trade id (the source derives both)."""
    if not ids:
        return [
            (t.source, t.exchange, t.symbol, t.raw_symbol, t.price, t.size, t.side, t.ts)
            for t in trades
        ]
    return [
        (t.source, t.exchange, t.symbol, t.raw_symbol, t.trade_id, t.seq, t.price, t.size, t.side,
         t.ts)
        for t in trades
    ]  # fmt: skip


class SourceRun:
    """A running source and everything it handed out."""

    def __init__(self, source: Source, dead_letters: DeadLetters | None = None) -> None:
        self.source = source
        self.batches: list[TradeBatch] = []
        self.events: list[Gap | Disconnect] = []
        self.ctx = SourceContext(emit=self.emit, event=self.events.append)
        if dead_letters is not None:
            self.ctx.dead_letters = dead_letters
        self.gate = asyncio.Event()
        self.gate.set()
        self.task: asyncio.Task[None] | None = None

    async def emit(self, batch: TradeBatch) -> None:
        await self.gate.wait()  # a closed gate is a full transport
        self.batches.append(batch)

    def trades(self) -> list[Trade]:
        return [t for b in self.batches for t in b.to_trades()]

    def gaps(self) -> list[Gap]:
        return [e for e in self.events if isinstance(e, Gap)]

    def disconnects(self) -> list[Disconnect]:
        return [e for e in self.events if isinstance(e, Disconnect)]

    async def until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds; TimeoutError after `timeout`, failure if the
        source stopped meanwhile."""
        async with asyncio.timeout(timeout):
            while not predicate():
                assert self.task is None or not self.task.done(), "the source stopped"
                await asyncio.sleep(0.005)

    async def received(self, count: int, timeout: float = 5.0) -> None:
        await self.until(lambda: len(self.trades()) >= count, timeout)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[asyncio.Task[None]]:
        task = self.task = asyncio.create_task(self.source.run(self.ctx))
        try:
            yield task
        finally:
            task.cancel()
            done, _ = await asyncio.wait([task], timeout=2.0)
            assert done, "the source did not stop when cancelled"
            assert task.cancelled(), f"the source stopped by itself: {task.exception()!r}"
