"""Coinbase trades over the Advanced Trade or the Exchange WebSocket feed, with REST backfill.

Each connection subscribes its share of the products (at most `max_products` of them, more
connections beyond that) when it opens, so a reconnect resubscribes by itself. Subscribe
messages of all connections share one pacer, because Coinbase counts unauthenticated messages
per IP (8 per second on Advanced Trade) and drops a connection that has not subscribed within
5 seconds.

Trade ids are consecutive per product. A skipped id, whether seen in the trades, in the
snapshot / `last_match` that follows a (re)subscribe, or in an Exchange heartbeat's
`last_trade_id`, is a gap; the backfill worker fetches the missing ids from the public REST
API (`GET /products/{id}/trades`), emits them like live trades and then reports a `Gap` event
saying how many of them it recovered.

The Advanced Trade `snapshot` after each subscribe (recent trades) is kept: its trades are real,
after a reconnect they fill part of the gap at no REST cost, and the engine removes repeats and
handles trades older than its correction horizon. Heartbeats (both feeds, every second) feed
the any-frame liveness timer; only frames with trades feed the data timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import msgspec

from tickpipe.records import Gap, TradeBatch
from tickpipe.sources import SourceContext, SourceStats
from tickpipe.sources.coinbase.parse import (
    EXCHANGE,
    InstrumentIndex,
    Parsed,
    RestTrade,
    micros,
    parse_advanced,
    parse_exchange,
    rest_batch,
    rest_trades,
)
from tickpipe.sources.gaps import IdGaps
from tickpipe.sources.rest import RestClient, RestConfig, RestError
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection

log = logging.getLogger(__name__)

ADVANCED_URL = "wss://advanced-trade-ws.coinbase.com"
EXCHANGE_URL = "wss://ws-feed.exchange.coinbase.com"
REST_URL = "https://api.exchange.coinbase.com"
STREAMS = ("advanced", "exchange")
DEFAULT_URLS = {"advanced": ADVANCED_URL, "exchange": EXCHANGE_URL}

# Coinbase publishes no cap on products per connection; this bound keeps one connection's
# traffic (and the snapshot that follows each subscribe) small enough to read without lag.
MAX_PRODUCTS_PER_CONNECTION = 100
REST_PAGE_LIMIT = 1000  # most trades one REST page returns

# Heartbeats arrive every second on both feeds, so ten silent seconds mean a dead link.
COINBASE_WS_CONFIG = WsConfig(idle_timeout=10.0, data_timeout=300.0)


@dataclass(frozen=True)
class BackfillConfig:
    enabled: bool = True
    max_trades: int = 50_000  # per gap; older missing trades are reported as not recovered
    request_interval: float = 0.15  # Exchange public REST allows 10 requests per second per IP
    max_pending: int = 1000  # gaps waiting for the worker; beyond it they are reported at once
    rest: RestConfig = field(default_factory=RestConfig)


class CoinbaseSource:
    """Trades of `symbols` (normalized, e.g. `BTC-USD`) from Coinbase."""

    def __init__(
        self,
        symbols: Sequence[str],
        url: str | None = None,
        stream: str = "advanced",
        rest_url: str = REST_URL,
        name: str = "coinbase",
        ws_config: WsConfig | None = None,
        backfill: BackfillConfig | None = None,
        max_products: int = MAX_PRODUCTS_PER_CONNECTION,
        subscribe_interval: float = 0.25,
    ) -> None:
        if stream not in STREAMS:
            raise ValueError(f"coinbase stream must be one of {', '.join(STREAMS)}, not {stream!r}")
        if not symbols:
            raise ValueError("coinbase needs at least one symbol")
        if max_products < 1:
            raise ValueError(f"max_products must be at least 1, not {max_products}")
        self.name = name
        self.stream = stream
        self.url = url or DEFAULT_URLS[stream]
        self.rest_url = rest_url
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE)
        self.ws_config = ws_config or COINBASE_WS_CONFIG
        self.backfill = backfill or BackfillConfig()
        self.subscribe_interval = subscribe_interval
        products = [i.raw_symbol for i in self.index.instruments]
        self.groups = [
            products[i : i + max_products] for i in range(0, len(products), max_products)
        ]
        self.gaps = GapTracker(len(self.index.instruments))
        self.clients: list[WsClient] = []
        self.rest_requests = 0
        self.rate_limited = 0

    def subscribe_messages(self, products: Sequence[str]) -> list[bytes]:
        """The messages that subscribe one connection to `products` (trades and heartbeats)."""
        if self.stream == "advanced":
            # One channel per message on Advanced Trade; heartbeats need no product list.
            return [
                msgspec.json.encode(
                    {"type": "subscribe", "product_ids": list(products), "channel": "market_trades"}
                ),
                msgspec.json.encode({"type": "subscribe", "channel": "heartbeats"}),
            ]
        return [
            msgspec.json.encode(
                {
                    "type": "subscribe",
                    "product_ids": list(products),
                    "channels": ["matches", "heartbeat"],
                }
            )
        ]

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled, reconnecting and backfilling."""
        parse = parse_advanced if self.stream == "advanced" else parse_exchange
        pacer = _Pacer(self.subscribe_interval)
        backfiller = _Backfiller(self, ctx)

        async def on_frames(frames: list[bytes], recv_ts: int) -> int:
            parsed: Parsed = parse(frames, recv_ts, self.index, self.name)
            for reject in parsed.rejects:
                ctx.dead_letters.write(self.name, reject.reason, reject.payload)
            ctx.stats.malformed += len(parsed.rejects)
            batch = parsed.batch
            if len(batch):
                ctx.stats.trades += len(batch)
                await ctx.emit(batch)
            # After emitting, so a gap's backfill never overtakes the trades that revealed it.
            for code, first, last in self.gaps.check(batch, parsed.last_ids):
                backfiller.submit(code, first, last)
            return parsed.data

        def subscriber(products: list[str]) -> Callable[[WsConnection], Awaitable[None]]:
            async def subscribe(conn: WsConnection) -> None:
                for message in self.subscribe_messages(products):
                    await pacer.wait()
                    conn.send(message)

            return subscribe

        connected: set[int] = set()
        self.clients = [
            WsClient(
                self.url,
                on_frames,
                name=self.name,
                config=self.ws_config,
                on_connect=subscriber(group),
                on_disconnect=ctx.event,
                stats=_ConnectionStats(ctx.stats, n, connected, len(self.groups)),  # type: ignore[arg-type]
            )
            for n, group in enumerate(self.groups)
        ]
        # Connections start one subscribe round apart, so that at start-up each subscribes
        # well within Coinbase's 5 seconds and the pacer never holds one back for long.
        stagger = self.subscribe_interval * len(self.subscribe_messages(self.groups[0]))
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(backfiller.run())
            for n, client in enumerate(self.clients):
                tasks.create_task(_start_after(n * stagger, client))


async def _start_after(delay: float, client: WsClient) -> None:
    if delay > 0:
        await asyncio.sleep(delay)
    await client.run()


class _ConnectionStats:
    """One connection's view of the source's counters: shared counts, and `connected` on the
    source only while every one of its connections is up."""

    def __init__(self, shared: SourceStats, n: int, connected: set[int], total: int) -> None:
        self._shared = shared
        self._n = n
        self._connected = connected
        self._total = total

    def __getattr__(self, name: str) -> object:
        return getattr(self._shared, name)

    def __setattr__(self, name: str, value: object) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        elif name == "connected":
            (self._connected.add if value else self._connected.discard)(self._n)
            self._shared.connected = len(self._connected) == self._total
        else:
            setattr(self._shared, name, value)


class _Pacer:
    """Spaces messages `interval` seconds apart across all connections of a source."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = 0.0
        self._loop = asyncio.get_running_loop()

    async def wait(self) -> None:
        now = self._loop.time()
        at = max(now, self._next)
        self._next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


class GapTracker(IdGaps):
    """Coinbase trade ids are consecutive per product; Exchange heartbeats carry the last id
    too, so a quiet product's losses show without a new trade."""

    def check(
        self, batch: TradeBatch, last_ids: Sequence[tuple[int, int]] = ()
    ) -> list[tuple[int, int, int]]:
        """(instrument, first missing id, last missing id) of every gap the batch reveals;
        `last_ids` are (instrument, last trade id) pairs from heartbeats, taken after it."""
        gaps = [h[:3] for h in self.holes(batch.instrument, batch.seq, batch.ts)]
        for code, last_id in last_ids:
            mark = int(self.last[code])
            if last_id > mark:
                if mark >= 0:
                    gaps.append((code, mark + 1, last_id))
                self.last[code] = last_id
        return gaps


class _Backfiller:
    """Fetches missing trades over REST one gap at a time, politely, and reports each gap."""

    def __init__(self, source: CoinbaseSource, ctx: SourceContext) -> None:
        self.source = source
        self.ctx = ctx
        self.config = source.backfill
        self.queue: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue(self.config.max_pending)
        self._last_request = -float("inf")

    def submit(self, code: int, first: int, last: int) -> None:
        """Queue a gap; when backfill is off or the queue is full, report it unrecovered now."""
        if not self.config.enabled:
            self._report(code, first, last, 0, "REST backfill is switched off")
            return
        try:
            self.queue.put_nowait((code, first, last))
        except asyncio.QueueFull:
            self._report(code, first, last, 0, "not backfilled: too many gaps waiting")

    async def run(self) -> None:
        if not self.config.enabled:
            return
        async with RestClient(self.source.rest_url, self.config.rest) as rest:
            while True:
                code, first, last = await self.queue.get()
                try:
                    await self._fill(rest, code, first, last)
                except Exception as exc:  # a bug here must not end the live feed
                    log.exception("%s: backfill of %d..%d failed", self.source.name, first, last)
                    self._report(code, first, last, 0, f"REST backfill failed: {exc!r}")
                finally:
                    self.source.rate_limited = rest.rate_limited

    async def _fill(self, rest: RestClient, code: int, first: int, last: int) -> None:
        product = self.source.index.instruments[code].raw_symbol
        missing = last - first + 1
        found: dict[int, RestTrade] = {}
        cursor = last + 1  # `after` returns trades older than the cursor, newest first
        problem = ""
        while cursor > first and len(found) < self.config.max_trades:
            limit = min(REST_PAGE_LIMIT, cursor - first, self.config.max_trades - len(found))
            await self._pace()
            try:
                page = await rest.get_json(
                    f"/products/{product}/trades", {"after": cursor, "limit": limit}
                )
                trades = rest_trades(page)
            except RestError as exc:
                problem = f"REST backfill failed: {exc}"
                break
            except msgspec.ValidationError as exc:
                problem = f"REST backfill got a malformed trade page: {exc}"
                self.ctx.stats.malformed += 1
                self.ctx.dead_letters.write(
                    self.source.name, f"bad REST trade page: {exc}", msgspec.json.encode(page)
                )
                break
            finally:
                self.source.rest_requests += 1
            if not trades:
                break
            for trade in trades:
                if first <= trade.trade_id <= last and micros(trade.time) >= 0:
                    found.setdefault(trade.trade_id, trade)
            oldest = min(t.trade_id for t in trades)  # what the CB-AFTER header names
            if oldest >= cursor:
                problem = "REST backfill stopped: the page did not move back in time"
                break
            cursor = oldest
        if found:
            now = time.time_ns() // 1000
            ordered = sorted(found.values(), key=lambda t: t.trade_id)
            batch = rest_batch(ordered, code, now, self.source.index, self.source.name)
            self.ctx.stats.trades += len(batch)
            await self.ctx.emit(batch)
        if len(found) == missing:
            detail = f"recovered all {missing} missing trades over REST"
        else:
            detail = f"recovered {len(found)} of {missing} missing trades over REST"
            if problem:
                detail += f"; {problem}"
            elif len(found) >= self.config.max_trades:
                detail += f"; the backfill stops at {self.config.max_trades} trades per gap"
            else:
                detail += "; the rest were not on the exchange's trade list"
        self._report(code, first, last, len(found), detail)

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_request + self.config.request_interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_request = loop.time()

    def _report(self, code: int, first: int, last: int, recovered: int, detail: str) -> None:
        instrument = self.source.index.instruments[code]
        self.ctx.event(
            Gap(
                source=self.source.name,
                exchange=instrument.exchange,
                symbol=instrument.symbol,
                first_missing=first,
                last_missing=last,
                ts=time.time_ns() // 1000,
                recovered=recovered,
                detail=detail,
            )
        )
