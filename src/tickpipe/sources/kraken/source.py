"""Kraken spot trades over the public WebSocket v2 `trade` channel, with REST gap backfill.

Symbols are subscribed with one `subscribe` request per connection, up to
`MAX_SYMBOLS_PER_CONNECTION` each; more symbols open more connections. Every (re)connect
subscribes again with `snapshot: true`, so the last 50 trades of each pair come first and close
short gaps at once. Kraken's v2 trade ids are sequence numbers per pair: an id skipped is a
lost trade, reported as a `Gap` once the REST backfill has tried to fetch it again.

Kraken sends a `heartbeat` about every second when a channel is quiet, so the any-frame timer
can be short; application-level `{"method": "ping"}` goes out every `app_ping_interval` seconds
(the server does not require it, but its `pong` proves the session answers); the shared
WebSocket helper sends it (`WsConfig.app_ping`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import msgspec

from tickpipe.records import Gap, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.gaps import IdGaps
from tickpipe.sources.kraken.backfill import GapRequest, backfill_gap
from tickpipe.sources.kraken.parse import EXCHANGE, InstrumentIndex, parse_frames
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection

DEFAULT_URL = "wss://ws.kraken.com/v2"
DEFAULT_REST_URL = "https://api.kraken.com"
# Kraken documents no per-connection symbol cap for v2 public channels, only a per-connection
# rate limit on requests; a modest chunk keeps one subscribe request (and its 50-trade
# snapshots) per connection small.
MAX_SYMBOLS_PER_CONNECTION = 100
MAX_PENDING_GAPS = 1000

KRAKEN_WS_CONFIG = WsConfig(
    idle_timeout=10.0,  # heartbeats come about once a second
    data_timeout=600.0,  # quiet pairs can go minutes without a trade
)


class KrakenSource:
    """Trades of `symbols` (normalized, e.g. `BTC-USD`, or Kraken's `XBT/USD`) from Kraken."""

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = DEFAULT_URL,
        rest_url: str | None = DEFAULT_REST_URL,
        name: str = "kraken",
        ws_config: WsConfig | None = None,
        rest_config: RestConfig | None = None,
        snapshot: bool = True,
        app_ping_interval: float | None = 30.0,
        max_symbols_per_connection: int = MAX_SYMBOLS_PER_CONNECTION,
    ) -> None:
        if not symbols:
            raise ValueError("kraken needs at least one symbol")
        if max_symbols_per_connection < 1:
            raise ValueError("kraken max_symbols_per_connection must be at least 1")
        self.name = name
        self.url = url
        self.rest_url = rest_url
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE)
        raw = [i.raw_symbol for i in self.index.instruments]
        self.groups = [
            raw[i : i + max_symbols_per_connection]
            for i in range(0, len(raw), max_symbols_per_connection)
        ]
        self.ws_config = ws_config or KRAKEN_WS_CONFIG
        self.rest_config = rest_config or RestConfig()
        self.snapshot = snapshot
        self.app_ping_interval = app_ping_interval
        self.gaps = GapDetector(len(self.index.instruments))
        self._req_ids = itertools.count(1)
        self._ping_ids = itertools.count(1)

    def subscribe_message(self, symbols: Sequence[str]) -> bytes:
        """The v2 `subscribe` request for the trade channel of `symbols`."""
        params = {"channel": "trade", "symbol": list(symbols), "snapshot": self.snapshot}
        return msgspec.json.encode(
            {"method": "subscribe", "params": params, "req_id": next(self._req_ids)}
        )

    def ping_message(self) -> bytes:
        """One application-level `ping` (each with its own `req_id`)."""
        return msgspec.json.encode({"method": "ping", "req_id": next(self._ping_ids)})

    def connection_config(self) -> WsConfig:
        """`ws_config` with the application ping added (when `app_ping_interval` is set)."""
        if not self.app_ping_interval:
            return self.ws_config
        return replace(
            self.ws_config,
            app_ping=self.ping_message,
            app_ping_interval=self.app_ping_interval,
            app_ping_idle=None,
        )

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled, reconnecting and backfilling."""
        pending: asyncio.Queue[GapRequest] = asyncio.Queue(MAX_PENDING_GAPS)
        config = self.connection_config()

        async def on_frames(frames: list[bytes], recv_ts: int) -> int:
            batch, rejects = parse_frames(frames, recv_ts, self.index, self.name)
            for reject in rejects:
                ctx.dead_letters.write(self.name, reject.reason, reject.payload)
            ctx.stats.malformed += len(rejects)
            if not len(batch):
                return 0
            for gap in self.gaps.check(batch):
                self._queue_gap(gap, pending, ctx)
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)
            return len(batch)

        def on_connect_for(symbols: list[str]) -> Callable[[WsConnection], Awaitable[None]]:
            async def on_connect(conn: WsConnection) -> None:
                conn.send(self.subscribe_message(symbols))

            return on_connect

        clients = [
            WsClient(
                self.url,
                on_frames,
                name=self.name,
                config=config,
                on_connect=on_connect_for(group),
                on_disconnect=ctx.event,
                stats=ctx.stats,
            )
            for group in self.groups
        ]
        async with asyncio.TaskGroup() as tasks:
            for client in clients:
                tasks.create_task(client.run())
            tasks.create_task(self._backfill(pending, ctx))

    def _queue_gap(
        self, gap: GapRequest, pending: asyncio.Queue[GapRequest], ctx: SourceContext
    ) -> None:
        if self.rest_url is None:
            ctx.event(self._gap_event(gap, 0, "trade ids skipped; REST backfill is off"))
            return
        try:
            pending.put_nowait(gap)
        except asyncio.QueueFull:
            ctx.event(self._gap_event(gap, 0, "trade ids skipped; backfill queue full"))

    async def _backfill(self, pending: asyncio.Queue[GapRequest], ctx: SourceContext) -> None:
        """Fetch gaps one at a time (Kraken throttles public REST per IP), emit what came back."""
        if self.rest_url is None:
            return
        async with RestClient(self.rest_url, self.rest_config) as client:
            while True:
                gap = await pending.get()
                result = await backfill_gap(client, gap, self.index.instruments, self.name)
                if len(result.batch):
                    ctx.stats.trades += len(result.batch)
                    await ctx.emit(result.batch)
                ctx.event(self._gap_event(gap, result.recovered, result.detail))

    def _gap_event(self, gap: GapRequest, recovered: int, detail: str) -> Gap:
        instrument = self.index.instruments[gap.code]
        return Gap(
            source=self.name,
            exchange=instrument.exchange,
            symbol=instrument.symbol,
            first_missing=gap.first,
            last_missing=gap.last,
            ts=time.time_ns() // 1000,
            recovered=recovered,
            detail=detail,
        )


class GapDetector(IdGaps):
    """Kraken v2 trade ids are sequence numbers per pair; each hole carries the time of the
    trade before it, where the REST backfill starts."""

    def check(self, batch: TradeBatch) -> list[GapRequest]:
        return [GapRequest(*h) for h in self.holes(batch.instrument, batch.seq, batch.ts)]
