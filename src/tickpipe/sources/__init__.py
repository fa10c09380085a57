"""Sources turn a feed (an exchange, a simulation, a file) into trade batches.

A source is an object with a `name` and an async `run(ctx)` that pushes batches through
`ctx.emit` until the feed ends or the task is cancelled. `emit` waits when the transport is
full: that wait is the backpressure that keeps memory bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from tickpipe.deadletter import DeadLetters
from tickpipe.records import Disconnect, Gap, TradeBatch


@dataclass
class SourceStats:
    """Counters a source keeps about its feed (shown by the terminal view and, later, metrics)."""

    frames: int = 0
    trades: int = 0
    malformed: int = 0
    reconnects: int = 0
    connected: bool = False


@dataclass
class SourceContext:
    """What a running source is given: where batches, events and rejects go."""

    emit: Callable[[TradeBatch], Awaitable[None]]
    event: Callable[[Gap | Disconnect], None] = lambda _event: None
    dead_letters: DeadLetters = field(default_factory=lambda: DeadLetters(None))
    stats: SourceStats = field(default_factory=SourceStats)


class Source(Protocol):
    name: str

    async def run(self, ctx: SourceContext) -> None:
        """Push trade batches through `ctx.emit` until the feed ends or the task is cancelled."""
        ...
