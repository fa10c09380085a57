"""Bitstamp trades over WebSocket v2 (`live_trades_<pair>`), with REST backfill after reconnects.

Every connection subscribes its pairs with `bts:subscribe` (again after each reconnect), sends
`{"event": "bts:heartbeat"}` after `ping_after` seconds without a frame (the server answers it;
the shared WebSocket helper sends it, `WsConfig.app_ping_idle`),
and is replaced at once when the server sends `bts:request_reconnect`. Bitstamp trade ids are
global across pairs, so lost trades cannot be detected from them; instead, after every
reconnect, each pair's trades newer than the last id seen are fetched over REST.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import msgspec
import numpy as np

from tickpipe.records import Gap, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.bitstamp.backfill import fetch_since, to_batch
from tickpipe.sources.bitstamp.parse import (
    CHANNEL_PREFIX,
    EXCHANGE,
    InstrumentIndex,
    parse_frames,
)
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.bitstamp.net"
DEFAULT_REST_URL = "https://www.bitstamp.net"
MAX_PER_CONNECTION = 100  # our choice; Bitstamp documents no channel limit per connection
HEARTBEAT = b'{"event":"bts:heartbeat"}'

BITSTAMP_WS_CONFIG = WsConfig(idle_timeout=30.0, data_timeout=300.0)


@dataclass
class _Link:
    codes: list[int]
    connects: int = 0
    client: WsClient | None = None


class BitstampSource:
    """Trades of `symbols` (normalized, e.g. `BTC-USD`) from Bitstamp."""

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = DEFAULT_URL,
        rest_url: str = DEFAULT_REST_URL,
        name: str = EXCHANGE,
        ws_config: WsConfig | None = None,
        rest_config: RestConfig | None = None,
        *,
        ping_after: float = 15.0,
        max_per_connection: int = MAX_PER_CONNECTION,
        backfill: bool = True,
        spellings: dict[str, str] | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("bitstamp needs at least one symbol")
        if ping_after <= 0 or max_per_connection < 1:
            raise ValueError("bitstamp: ping_after and max_per_connection must be > 0")
        self.name = name
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE, spellings)
        self.url = url
        self.rest_url = rest_url
        self.ws_config = ws_config or BITSTAMP_WS_CONFIG
        self.rest_config = rest_config or RestConfig()
        self.ping_after = ping_after
        self.backfill = backfill
        n = len(self.index.instruments)
        self.links = [
            _Link(list(range(lo, min(n, lo + max_per_connection))))
            for lo in range(0, n, max_per_connection)
        ]
        self.last_id = np.full(n, -1, np.int64)  # highest trade id seen per pair
        self.last_ts = np.zeros(n, np.int64)  # its trade time, µs
        self.awaiting = np.zeros(n, np.bool_)  # reconnected, no live trade of the pair yet
        self.resumed = np.full(n, -1, np.int64)  # first live id after the latest reconnect
        self._queue: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled, reconnecting and backfilling."""
        self._queue = asyncio.Queue(maxsize=10_000)
        async with asyncio.TaskGroup() as group:
            if self.backfill:
                group.create_task(self._backfill_worker(ctx))
            for link in self.links:
                group.create_task(self._run_link(link, ctx))

    def connection_config(self) -> WsConfig:
        """`ws_config` with Bitstamp's heartbeat after `ping_after` seconds without a frame."""
        ping_after = self.ping_after
        return replace(
            self.ws_config, app_ping=HEARTBEAT, app_ping_idle=ping_after, app_ping_interval=None
        )

    def _seen(self, batch: TradeBatch) -> None:
        inst, seq = batch.instrument, batch.seq
        newer = seq > self.last_id[inst]
        np.maximum.at(self.last_id, inst[newer], seq[newer])
        hit = seq[newer] == self.last_id[inst[newer]]
        self.last_ts[inst[newer][hit]] = batch.ts[newer][hit]

    async def _run_link(self, link: _Link, ctx: SourceContext) -> None:
        async def on_frames(frames: list[bytes], recv_ts: int) -> int:
            parsed = parse_frames(frames, recv_ts, self.index, self.name)
            for reject in parsed.rejects:
                ctx.dead_letters.write(self.name, reject.reason, reject.payload)
            ctx.stats.malformed += len(parsed.rejects)
            if parsed.reconnect and client.connection is not None:
                client.connection.reconnect("planned: bts:request_reconnect")
            batch = parsed.batch
            if not len(batch):
                return 0
            self._seen(batch)
            waiting = self.awaiting[batch.instrument]
            if waiting.any():
                for code in np.unique(batch.instrument[waiting]).tolist():
                    self.resumed[code] = batch.seq[batch.instrument == code].min()
                    self.awaiting[code] = False
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)
            return len(batch)

        async def on_connect(conn: WsConnection) -> None:
            if link.connects and self.backfill:
                for code in link.codes:
                    if self.last_id[code] >= 0:
                        self.awaiting[code] = True
                        with contextlib.suppress(asyncio.QueueFull):
                            request = (code, int(self.last_id[code]), int(self.last_ts[code]))
                            self._queue.put_nowait(request)
            link.connects += 1
            for code in link.codes:
                channel = CHANNEL_PREFIX + self.index.instruments[code].raw_symbol
                conn.send(msgspec.json.encode({"event": "bts:subscribe",
                                               "data": {"channel": channel}}))  # fmt: skip

        client = WsClient(
            self.url,
            on_frames,
            name=self.name,
            config=self.connection_config(),
            on_connect=on_connect,
            on_disconnect=ctx.event,
            stats=ctx.stats,
        )
        link.client = client
        await client.run()

    async def _backfill_worker(self, ctx: SourceContext) -> None:
        async with RestClient(self.rest_url, self.rest_config) as client:
            while True:
                code, after_id, after_ts = await self._queue.get()
                try:
                    await self._backfill(client, code, after_id, after_ts, ctx)
                except Exception as exc:  # a failed backfill is reported, never fatal
                    log.warning("%s: backfill failed: %r", self.name, exc)
                    detail = f"REST backfill after reconnect failed: {exc}"
                    ctx.event(self._gap(code, after_id + 1, after_id + 1, 0, detail))

    async def _backfill(
        self, client: RestClient, code: int, after_id: int, after_ts: int, ctx: SourceContext
    ) -> None:
        inst = self.index.instruments[code]
        trades, bad, complete = await fetch_since(
            client, inst.raw_symbol, after_id, after_ts / 1_000_000
        )
        for row in bad:
            ctx.dead_letters.write(self.name, "bad REST trade", msgspec.json.encode(row))
        ctx.stats.malformed += len(bad)
        if not trades:
            if not complete:
                detail = "disconnected for over a day: older trades cannot be fetched"
                ctx.event(self._gap(code, after_id + 1, after_id + 1, 0, detail))
            return
        batch = to_batch(trades, code, self.index, self.name)
        self._seen(batch)
        # Trades from the first live one after the reconnect on came live too: not missed.
        resumed = -1 if self.awaiting[code] else int(self.resumed[code])
        missed = [t.tid for t in trades if resumed < 0 or t.tid < resumed]
        detail = f"recovered {len(missed)} trades made while disconnected over REST"
        if not complete:
            detail += "; disconnected for over a day: older trades cannot be fetched"
        if missed or not complete:
            first, last = (min(missed), max(missed)) if missed else (after_id + 1, after_id + 1)
            ctx.event(self._gap(code, first, last, len(missed), detail))
        ctx.stats.trades += len(batch)
        await ctx.emit(batch)

    def _gap(self, code: int, first: int, last: int, recovered: int, detail: str) -> Gap:
        inst = self.index.instruments[code]
        return Gap(
            source=self.name,
            exchange=inst.exchange,
            symbol=inst.symbol,
            first_missing=first,
            last_missing=last,
            ts=time.time_ns() // 1000,
            recovered=recovered,
            detail=detail,
        )
