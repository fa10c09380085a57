"""The scaffold every WebSocket exchange connector is built on: a sharded feed and one refill path.

`ShardedFeed.run()` splits the source's instruments into connection groups (up to the
exchange's limit per connection), runs one `WsClient` per group in one task group, sends the
group's subscribe messages on every (re)connect, hands frames to the connector's parser (one
`Parsed` result), writes rejects to the dead letters and counts them, emits batches, and lets
the connector check them for gaps. Each client keeps its own connection state, so the source
reports `connected` only while every group is up.

Lost trades come back through one contract: the connector's `fetch_since(rest, refill)` fetches
what was traded after the last trade seen before a hole (`Refill.after_ts` / `first - 1`) and
says what came back (`Refilled`). Requests wait in one bounded queue worked one at a time over
the connector's REST client; each hole ends as one `Gap` event that says how many trades came
back or why none did. A connector without REST history says so with `refills = False`; a hole
it reports then (or one that finds the queue full) carries the connector's `refill_off` /
`refill_full` reason.

What a parse or a refill brought is handed on the same way everywhere (`hand_on`, `delivered`:
rejects to the dead letters, batches to `ctx.emit`, both counted; then the `Gap`), by sources
that are not a `ShardedFeed` too (ccxt).

A connector supplies: its URL (`connection_url` where the streams are named in it) and
`subscribe_messages`, `parse`, `connection_config` where it needs an application ping,
`checked` (its gap check), `reconnected` (catch-ups) and `fetch_since`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from tickpipe.credentials import redact_secrets
from tickpipe.records import Gap, Instrument, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.parsing import Parsed, Reject
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection

if TYPE_CHECKING:
    from tickpipe.history.recording import FrameRecorder

log = logging.getLogger(__name__)

MAX_PENDING_REFILLS = 10_000


class Refill(NamedTuple):
    """Trades `first`..`last` (ids or order keys) of instrument `code` to fetch again; the
    trade seen just before them is `first - 1`, at `after_ts` (µs), with the exchange's id
    `after_id` where that is not a number. `first > last`: how many is unknown (after a
    reconnect), so nothing is reported unless the fetch finds some."""

    code: int
    first: int
    last: int
    after_ts: int = 0
    after_id: str = ""


class Refilled(NamedTuple):
    """What one refill brought back: batches to emit, REST rows that were not trades, the
    `Gap` that reports the hole (None: nothing was missing), and holes the fetched trades
    revealed (to refill in turn)."""

    batches: Sequence[TradeBatch] = ()
    gap: Gap | None = None
    rejects: Sequence[Reject] = ()
    more: Sequence[Refill] = ()


@dataclass
class Shard:
    """One connection's share of the source: the raw symbols it subscribes, their codes."""

    symbols: list[str]
    codes: list[int]
    connects: int = 0  # how often it has (re)connected
    client: WsClient | None = None


def split(symbols: Sequence[str], per_connection: int) -> list[list[int]]:
    """Positions of `symbols` in connection groups of at most `per_connection`."""
    n = len(symbols)
    return [list(range(lo, min(n, lo + per_connection))) for lo in range(0, n, per_connection)]


class ShardedFeed:
    """Base of a WebSocket connector: connection groups, resubscribe, parse, emit, refill."""

    connect_interval = 0.0  # seconds between the starts of the connections
    secrets: Sequence[str] = ()  # an API token in the URL or a message: never shown
    reconnect_reason = "planned: the server asked to reconnect"
    refill_off = "REST backfill is off"
    refill_full = "backfill queue full"
    max_pending_refills = MAX_PENDING_REFILLS

    def __init__(
        self,
        name: str,
        url: str,
        ws_config: WsConfig,
        instruments: Sequence[Instrument] = (),
        rest_url: str | None = None,
        rest_config: RestConfig | None = None,
    ) -> None:
        """`instruments` by code (what `Gap` events name); `rest_url`: where refills go."""
        self.name = name
        self.url = url
        self.ws_config = ws_config
        self.instruments = instruments
        self.rest_url = rest_url
        self.rest_config = rest_config or RestConfig()
        self.shards: list[Shard] = []
        # `run --record`: every delivery of frames is kept as it came, before it is parsed.
        self.recorder: FrameRecorder | None = None
        self._refills: asyncio.Queue[Refill] = asyncio.Queue(self.max_pending_refills)

    def shard(self, symbols: Sequence[str], groups: Sequence[Sequence[int]]) -> None:
        """Connect `symbols` in these groups (positions, which are also instrument codes)."""
        self.shards = [Shard([symbols[i] for i in g], list(g)) for g in groups]

    def shard_by_symbol(self, per_connection: int) -> None:
        """Connect the instruments by their raw symbols, at most `per_connection` on each."""
        raw = [i.raw_symbol for i in self.instruments]
        self.shard(raw, split(raw, per_connection))

    # What a connector supplies -------------------------------------------------------------

    def subscribe_messages(self, shard: Shard) -> Sequence[bytes]:
        """The messages that subscribe one connection (sent on every (re)connect)."""
        return ()

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        raise NotImplementedError

    def connection_url(self, shard: Shard) -> str:
        """Where one connection goes: `url` (a feed that names its streams in the URL adds
        the shard's)."""
        return self.url

    def connection_config(self) -> WsConfig:
        """The config of each connection (`ws_config`, plus an application ping where needed)."""
        return self.ws_config

    def checked(self, parsed: Parsed, ctx: SourceContext) -> None:
        """Before a batch goes out: note what it shows (gaps, marks), request refills."""

    def reconnected(self, shard: Shard, ctx: SourceContext) -> None:
        """A connection of `shard` opened again (before it subscribes): request catch-ups."""

    @property
    def refills(self) -> bool:
        """Whether lost trades can be fetched again (the connector has a REST history)."""
        return self.rest_url is not None

    async def fetch_since(self, rest: RestClient, refill: Refill) -> Refilled:
        """The trades of `refill.code` after `first - 1` (up to `last` where known)."""
        raise NotImplementedError

    # The shared machinery ------------------------------------------------------------------

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled: every connection group in one task
        group, and the refill worker beside them."""
        self._refills = asyncio.Queue(self.max_pending_refills)
        config = self.connection_config()
        clients = [self._client(shard, config, ctx) for shard in self.shards]
        async with asyncio.TaskGroup() as tasks:
            if self.refills:
                tasks.create_task(self._refill_worker(ctx))
            for n, client in enumerate(clients):
                tasks.create_task(_start_after(n * self.connect_interval, client))

    async def subscribe(self, conn: WsConnection, shard: Shard) -> None:
        """Send the subscribe messages of `shard` (a connector may pace them)."""
        for message in self.subscribe_messages(shard):
            conn.send(message)

    async def hand_on_parsed(self, parsed: Parsed, ctx: SourceContext) -> None:
        """Check what `parse` made of a delivery of frames, hand its trades and rejects on:
        the one path of live frames and of recorded ones (`replay-raw`)."""
        # Before emitting, so a refill running meanwhile knows what was streamed.
        self.checked(parsed, ctx)
        rejects = [Reject(self._shown(r.payload), r.reason) for r in parsed.rejects]
        await hand_on(ctx, self.name, [parsed.batch], rejects)

    def _client(self, shard: Shard, config: WsConfig, ctx: SourceContext) -> WsClient:
        conn_no = self.shards.index(shard)

        async def on_frames(frames: list[bytes], recv_ts: int) -> int:
            if self.recorder is not None:
                await self.recorder.frames_received(
                    self.name, recv_ts, conn_no, shard.connects, frames
                )
            parsed = self.parse(frames, recv_ts)
            if parsed.reconnect and client.connection is not None:
                client.connection.reconnect(self.reconnect_reason)
            await self.hand_on_parsed(parsed, ctx)
            return parsed.data_frames()

        async def on_connect(conn: WsConnection) -> None:
            if shard.connects:
                self.reconnected(shard, ctx)
            shard.connects += 1
            await self.subscribe(conn, shard)

        client = WsClient(
            self.connection_url(shard),
            on_frames,
            name=self.name,
            config=config,
            on_connect=on_connect,
            on_disconnect=ctx.event,
            stats=ctx.stats,
            secrets=self.secrets,
        )
        shard.client = client
        return client

    def _shown(self, payload: bytes) -> bytes:
        """A rejected frame as the dead letters keep it: without the secrets."""
        if not self.secrets:
            return payload
        return redact_secrets(payload.decode("utf-8", "replace"), self.secrets).encode()

    def request(self, refill: Refill, ctx: SourceContext) -> None:
        """Queue a refill; a known hole that cannot be (refills off, queue full) is reported
        at once as not recovered."""
        if not self.refills:
            self._unqueued(refill, self.refill_off, ctx)
            return
        try:
            self._refills.put_nowait(refill)
        except asyncio.QueueFull:
            self._unqueued(refill, self.refill_full, ctx)

    def _unqueued(self, refill: Refill, detail: str, ctx: SourceContext) -> None:
        if refill.first <= refill.last:
            ctx.event(self.gap(refill.code, refill.first, refill.last, 0, detail))

    async def _refill_worker(self, ctx: SourceContext) -> None:
        """Refills one at a time (exchanges throttle public REST per IP); a failed one is
        reported, never fatal."""
        assert self.rest_url is not None  # `refills` says there is one
        async with RestClient(self.rest_url, self.rest_config) as rest:
            while True:
                refill = await self._refills.get()
                try:
                    refilled = await self.fetch_since(rest, refill)
                except Exception as exc:
                    log.warning("%s: backfill failed: %r", self.name, exc)
                    detail = f"REST backfill failed: {exc}"
                    self._unqueued(refill, detail, ctx)
                    continue
                if self.recorder is not None:
                    await self.recorder.refilled(self.name, refilled.batches)
                await delivered(ctx, self.name, refilled)
                for more in refilled.more:
                    self.request(more, ctx)

    def gap(self, code: int, first: int, last: int, recovered: int, detail: str) -> Gap:
        """The `Gap` event of trades `first`..`last` of instrument `code`."""
        return gap_event(self.name, self.instruments[code], first, last, recovered, detail)


def gap_event(
    source: str, instrument: Instrument, first: int, last: int, recovered: int, detail: str
) -> Gap:
    """A `Gap` of `instrument`'s trades `first`..`last`, stamped now: how many came back, and
    what happened to the rest."""
    return Gap(
        source=source,
        exchange=instrument.exchange,
        symbol=instrument.symbol,
        first_missing=first,
        last_missing=last,
        ts=time.time_ns() // 1000,
        recovered=recovered,
        detail=detail,
    )


async def hand_on(
    ctx: SourceContext, name: str, batches: Iterable[TradeBatch], rejects: Sequence[Reject]
) -> None:
    """Rejects to the dead letters and each batch with trades to `ctx.emit`, both counted."""
    for reject in rejects:
        ctx.dead_letters.write(name, reject.reason, reject.payload)
    ctx.stats.malformed += len(rejects)
    for batch in batches:
        if len(batch):
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)


async def delivered(ctx: SourceContext, name: str, refilled: Refilled) -> None:
    """What a refill brought back handed on, then its `Gap` event."""
    await hand_on(ctx, name, refilled.batches, refilled.rejects)
    if refilled.gap is not None:
        ctx.event(refilled.gap)


def rest_rejects(rows: Sequence[object]) -> list[Reject]:
    """REST rows that are not trades, as rejects for the dead letters."""
    return [Reject(msgspec.json.encode(row), "bad REST trade") for row in rows]


async def _start_after(delay: float, client: WsClient) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    await client.run()
