"""The bounded in-process transport between sources and the engine.

Bounded in trades, not only in batches, so that a source emitting huge batches cannot hold
more memory than a source emitting small ones. A full queue makes `put` wait: backpressure.
"""

from __future__ import annotations

import asyncio
from collections import deque

from tickpipe.records import TradeBatch


class MemoryTransport:
    """An asyncio queue of trade batches holding at most `max_trades` trades.

    A single batch larger than the bound is still accepted when the queue is empty, so no
    batch can wait forever.
    """

    def __init__(self, max_trades: int = 1_000_000) -> None:
        if max_trades < 1:
            raise ValueError("max_trades must be at least 1")
        self.max_trades = max_trades
        self.depth = 0  # trades queued now
        self.waits = 0  # times a producer had to wait: the backpressure counter
        self._items: deque[TradeBatch] = deque()
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._items)

    async def put(self, batch: TradeBatch) -> None:
        n = len(batch)
        async with self._changed:
            if self._items and self.depth + n > self.max_trades:
                self.waits += 1
                await self._changed.wait_for(
                    lambda: not self._items or self.depth + n <= self.max_trades
                )
            self._items.append(batch)
            self.depth += n
            self._changed.notify_all()

    async def get(self, timeout: float | None = None) -> TradeBatch | None:
        """The next batch, or None if `timeout` seconds pass with nothing queued."""
        async with self._changed:
            if not self._items:
                try:
                    # `asyncio.timeout`, not `wait_for`: no task made per wait (one per
                    # engine step in a live run).
                    async with asyncio.timeout(timeout):
                        await self._changed.wait_for(lambda: bool(self._items))
                except TimeoutError:
                    return None
            batch = self._items.popleft()
            self.depth -= len(batch)
            self._changed.notify_all()
            return batch

    def get_nowait_all(self) -> list[TradeBatch]:
        """Everything queued now, without waiting (the consumer drains in large bites)."""
        items = list(self._items)
        self._items.clear()
        self.depth = 0
        return items

    async def wake_producers(self) -> None:
        async with self._changed:
            self._changed.notify_all()
