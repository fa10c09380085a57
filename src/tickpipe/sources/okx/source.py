"""OKX spot trades over the v5 WebSocket API, with gap detection and REST backfill.

The default stream is `trades-all` on `/ws/v5/business`: one push per trade, with the same
consecutive per-instrument trade ids that the REST history has, so a hole in the ids names the
lost trades and the refetched ones de-duplicate exactly against the live ones. The `trades`
stream on `/ws/v5/public` is OKX's aggregated feed: one row per taker order and price, whose
`tradeId` is the last id of the `count` trades it stands for; gaps are found from `count`, and
only holes between two received rows are refetched (trade by trade, ids disjoint from the rows).

OKX closes a connection after 30 s without traffic, so each connection sends the text `ping`
after `ping_after` seconds without a frame and expects `pong`; the shared WebSocket helper sends
it (`WsConfig.app_ping_idle`) and its any-frame timer reconnects when the `pong` does not come.
A `notice` with code 64008 announces a server upgrade: the connection is replaced at once.
Subscriptions are sent in requests well under OKX's 64 KB limit, and instruments beyond
`max_per_connection` go to further connections, opened no faster than OKX's three connection
requests per second.
"""

from __future__ import annotations

import asyncio
import logging
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, replace

import msgspec
import numpy as np

from tickpipe.records import Gap, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.gaps import IdGaps
from tickpipe.sources.okx.backfill import fetch_trades, ids_in, to_batch
from tickpipe.sources.okx.parse import EXCHANGE, InstrumentIndex, OkxTrade, parse_frames
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection

log = logging.getLogger(__name__)

DEFAULT_URL = "wss://ws.okx.com:8443"
DEFAULT_REST_URL = "https://www.okx.com"
STREAMS = ("trades-all", "trades")
PATHS = {"trades-all": "/ws/v5/business", "trades": "/ws/v5/public"}
MAX_PER_CONNECTION = 200  # our choice: OKX caps request size (64 KB), not channels per connection
ARGS_PER_REQUEST = 100  # about 5 KB of JSON per subscribe request
CONNECT_INTERVAL = 0.35  # OKX allows 3 connection requests per second per IP

OKX_WS_CONFIG = WsConfig(idle_timeout=30.0, data_timeout=300.0)


@dataclass
class _Request:
    """Trades of one instrument to refetch: ids in (after_id, before_id); open-ended when None."""

    code: int
    after_id: int
    before_id: int | None = None


@dataclass
class _Link:
    """One connection's share of the instruments."""

    raw_symbols: list[str]
    codes: list[int]
    connects: int = 0
    client: WsClient | None = None


class OkxSource:
    """Trades of `symbols` (normalized, e.g. `BTC-USDT`) from OKX spot."""

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = DEFAULT_URL,
        rest_url: str = DEFAULT_REST_URL,
        stream: str = "trades-all",
        name: str = EXCHANGE,
        ws_config: WsConfig | None = None,
        rest_config: RestConfig | None = None,
        *,
        ping_after: float = 20.0,
        max_per_connection: int = MAX_PER_CONNECTION,
        connect_interval: float = CONNECT_INTERVAL,
        backfill: bool = True,
        backfill_limit: int = 5000,
        spellings: dict[str, str] | None = None,
    ) -> None:
        if stream not in STREAMS:
            raise ValueError(f"okx stream must be one of {', '.join(STREAMS)}, not {stream!r}")
        if not symbols:
            raise ValueError("okx needs at least one symbol")
        if ping_after <= 0 or max_per_connection < 1 or backfill_limit < 1:
            raise ValueError("okx: ping_after, max_per_connection and backfill_limit must be > 0")
        self.name = name
        self.stream = stream
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE, spellings)
        self.url = _stream_url(url, stream)
        self.rest_url = rest_url
        self.ws_config = ws_config or OKX_WS_CONFIG
        self.rest_config = rest_config or RestConfig()
        self.ping_after = ping_after
        self.connect_interval = connect_interval
        self.backfill = backfill
        self.backfill_limit = backfill_limit
        n = len(self.index.instruments)
        self.links = [
            _Link(
                [i.raw_symbol for i in self.index.instruments[lo : lo + max_per_connection]],
                list(range(lo, min(n, lo + max_per_connection))),
            )
            for lo in range(0, n, max_per_connection)
        ]
        self.gaps = GapDetector(n)
        self._queue: asyncio.Queue[_Request] = asyncio.Queue(maxsize=10_000)
        self._recent: dict[int, tuple[int, int, list[OkxTrade]]] = {}

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled, reconnecting and backfilling as needed."""
        self._queue = asyncio.Queue(maxsize=10_000)
        async with asyncio.TaskGroup() as group:
            if self.backfill:
                group.create_task(self._backfill_worker(ctx))
            for n, link in enumerate(self.links):
                group.create_task(self._run_link(link, ctx, n * self.connect_interval))

    def connection_config(self) -> WsConfig:
        """`ws_config` with OKX's text `ping` after `ping_after` seconds without a frame."""
        return replace(
            self.ws_config, app_ping="ping", app_ping_idle=self.ping_after, app_ping_interval=None
        )

    # -- live feed -----------------------------------------------------------------------

    async def _run_link(self, link: _Link, ctx: SourceContext, delay: float) -> None:
        await asyncio.sleep(delay)

        async def on_frames(frames: list[bytes], recv_ts: int) -> int:
            parsed = parse_frames(frames, recv_ts, self.index, self.name)
            for reject in parsed.rejects:
                ctx.dead_letters.write(self.name, reject.reason, reject.payload)
            ctx.stats.malformed += len(parsed.rejects)
            if parsed.reconnect and client.connection is not None:
                client.connection.reconnect("planned: server upgrade notice 64008")
            batch = parsed.batch
            if not len(batch):
                return 0
            self._found(self.gaps.check(batch, parsed.first_seq), ctx)
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)
            return len(batch)

        async def on_connect(conn: WsConnection) -> None:
            if link.connects and self.backfill and self.stream == "trades-all":
                for code in link.codes:
                    mark = int(self.gaps.last[code])
                    if mark >= 0:
                        self._enqueue(_Request(code, mark), ctx)
            link.connects += 1
            for lo in range(0, len(link.raw_symbols), ARGS_PER_REQUEST):
                args = [
                    {"channel": self.stream, "instId": s}
                    for s in link.raw_symbols[lo : lo + ARGS_PER_REQUEST]
                ]
                conn.send(msgspec.json.encode({"op": "subscribe", "args": args}))

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

    # -- gaps and backfill ---------------------------------------------------------------

    def _found(self, gaps: list[tuple[int, int, int]], ctx: SourceContext) -> None:
        for code, first, last in gaps:
            if self.backfill:
                self._enqueue(_Request(code, first - 1, last + 1), ctx)
            else:
                ctx.event(self._gap(code, first, last, 0, "trade ids skipped; backfill is off"))

    def _enqueue(self, request: _Request, ctx: SourceContext) -> None:
        try:
            self._queue.put_nowait(request)
        except asyncio.QueueFull:
            if request.before_id is not None:
                first, last = request.after_id + 1, request.before_id - 1
                ctx.event(self._gap(request.code, first, last, 0, "backfill queue full"))

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

    async def _backfill_worker(self, ctx: SourceContext) -> None:
        async with RestClient(self.rest_url, self.rest_config) as client:
            while True:
                request = await self._queue.get()
                try:
                    await self._backfill(client, request, ctx)
                except Exception as exc:  # a failed backfill is reported, never fatal
                    log.warning("%s: backfill failed: %r", self.name, exc)
                    if request.before_id is not None:
                        first, last = request.after_id + 1, request.before_id - 1
                        detail = f"REST backfill failed: {exc}"
                        ctx.event(self._gap(request.code, first, last, 0, detail))

    async def _backfill(self, client: RestClient, request: _Request, ctx: SourceContext) -> None:
        code, after_id = request.code, request.after_id
        inst_id = self.index.instruments[code].raw_symbol
        if request.before_id is None:
            await self._backfill_reconnect(client, code, inst_id, after_id, ctx)
            return
        first, last = after_id + 1, request.before_id - 1
        missing = last - first + 1
        recent = self._recent.get(code)
        if recent is not None and recent[0] <= after_id and last <= recent[1]:
            got = ids_in(recent[2], first, last)  # already fetched after the reconnect
            detail = f"recovered {got} of {missing} trades over REST after reconnect"
            ctx.event(self._gap(code, first, last, got, detail))
            return
        limit = self.backfill_limit
        fetched = await fetch_trades(
            client, inst_id, after_id=after_id, before_id=request.before_id, limit=limit
        )
        self._reject_rows(fetched.bad_rows, ctx)
        got = ids_in(fetched.trades, first, last)
        detail = f"recovered {got} of {missing} trades over REST"
        if fetched.limited:
            detail += f" (stopped at the limit of {self.backfill_limit})"
        elif got < missing:
            detail += "; the rest were not returned"
        if fetched.trades:
            batch = to_batch(fetched.trades, self.index, self.name)
            self.gaps.check(batch)  # raises the mark; holes inside it are already this gap
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)
        ctx.event(self._gap(code, first, last, got, detail))

    async def _backfill_reconnect(
        self, client: RestClient, code: int, inst_id: str, after_id: int, ctx: SourceContext
    ) -> None:
        """Fetch everything after the last trade seen before a reconnect.

        Reports the trades as a gap only when no live trade has arrived since; otherwise the
        live feed's own gap (first live id minus the mark) is reported from the same fetch.
        """
        fetched = await fetch_trades(client, inst_id, after_id=after_id, limit=self.backfill_limit)
        self._reject_rows(fetched.bad_rows, ctx)
        if not fetched.trades:
            return
        newest = max(t.tradeId for t in fetched.trades)
        oldest = min(t.tradeId for t in fetched.trades)
        self._recent[code] = (after_id, newest, fetched.trades)
        quiet = int(self.gaps.last[code]) <= after_id
        batch = to_batch(fetched.trades, self.index, self.name)
        found = self.gaps.check(batch)
        if quiet:
            first = oldest if fetched.limited else after_id + 1
            got = ids_in(fetched.trades, first, newest)
            detail = f"traded while disconnected: recovered {got} of {newest - first + 1} over REST"
            if fetched.limited:
                detail += f" (stopped at the limit of {self.backfill_limit})"
            ctx.event(self._gap(code, first, newest, got, detail))
            found = [g for g in found if g[2] < first]  # the part before the limit
        self._found(found, ctx)
        ctx.stats.trades += len(batch)
        await ctx.emit(batch)

    def _reject_rows(self, rows: list[object], ctx: SourceContext) -> None:
        for row in rows:
            ctx.dead_letters.write(self.name, "bad REST trade", msgspec.json.encode(row))
        ctx.stats.malformed += len(rows)


class GapDetector(IdGaps):
    """OKX trade ids are consecutive per instrument; a row of the aggregated `trades` channel
    stands for `first_seq` to `seq`."""

    def check(
        self, batch: TradeBatch, first_seq: np.ndarray | None = None
    ) -> list[tuple[int, int, int]]:
        """(instrument code, first missing id, last missing id) of each hole; marks the batch."""
        return [h[:3] for h in self.holes(batch.instrument, batch.seq, batch.ts, first_seq)]


def _stream_url(url: str, stream: str) -> str:
    """The endpoint of `stream`: a bare host gets OKX's path for it, a full URL is kept."""
    parts = urllib.parse.urlsplit(url)
    if parts.path in ("", "/"):
        return f"{url.rstrip('/')}{PATHS[stream]}"
    return url
