"""Sources turn a feed (an exchange, a simulation, a file) into trade batches.

A source is an object with a `name` and an async `run(ctx)` that pushes batches through
`ctx.emit` until the feed ends or the task is cancelled. `emit` waits when the transport is
full: that wait is the backpressure that keeps memory bounded.

The WebSocket exchange connectors (Binance, Coinbase, Kraken, Bybit, OKX, Bitstamp, and the
aggregators Finnhub and Tiingo through `aggregated.AggregatorFeed`) are built on one scaffold
(`feed.ShardedFeed`: connection groups, resubscribe, parse into one `parsing.Parsed`, refills
through `fetch_since`). ccxt owns its own sockets, so its source shares only the pieces that
fit (`Parsed`, a `Link` per watch loop, `fetch_since`). Each connection keeps its own state in
`SourceStats.links`, from which the source's `connected` is derived; a poller or a
simulation without connections of its own states it whole.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from tickpipe.deadletter import DeadLetters
from tickpipe.records import Disconnect, Gap, TradeBatch


@dataclass
class Link:
    """The state of one connection of a source (a WebSocket client keeps its own)."""

    up: bool = False


@dataclass
class SourceStats:
    """Counters a source keeps about its feed (shown by the terminal view and the metrics).

    Connection state is kept per connection (`links`, one per WebSocket client, registered
    when the client is made) and derived for the source: `connected` is True only while every
    connection is up, so a source with one connection down never reports itself connected.
    """

    frames: int = 0
    trades: int = 0
    malformed: int = 0
    reconnects: int = 0
    links: list[Link] = field(default_factory=list)
    # Why the feed last dropped (a `Disconnect`'s reason): "waiting" alone says nothing.
    last_disconnect: str = ""
    # The feed ended (its end, or the pipeline stopped it): no reconnect is coming.
    finished: bool = False
    error: str = ""  # why the source stopped, when it failed

    def link(self) -> Link:
        """A new connection of the source, down until it says otherwise."""
        link = Link()
        self.links.append(link)
        return link

    @property
    def connected(self) -> bool:
        """Whether every connection of the source is up (and it has one)."""
        return bool(self.links) and all(link.up for link in self.links)

    @connected.setter
    def connected(self, up: bool) -> None:
        # A source without connections of its own (a poller, a simulation) states it whole.
        self.links = [Link(up)]


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
