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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from tickpipe.records import TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.coinbase import INFO
from tickpipe.sources.coinbase.parse import (
    EXCHANGE,
    InstrumentIndex,
    RestTrade,
    micros,
    parse_advanced,
    parse_exchange,
    rest_batch,
    rest_trades,
)
from tickpipe.sources.feed import Refill, Refilled, Shard, ShardedFeed
from tickpipe.sources.gaps import IdGaps
from tickpipe.sources.parsing import Parsed, Reject
from tickpipe.sources.rest import RestClient, RestConfig, RestError
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection

ADVANCED_URL = "wss://advanced-trade-ws.coinbase.com"
EXCHANGE_URL = "wss://ws-feed.exchange.coinbase.com"
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


class CoinbaseSource(ShardedFeed):
    """Trades of `symbols` (normalized, e.g. `BTC-USD`) from Coinbase."""

    refill_off = "REST backfill is switched off"
    refill_full = "not backfilled: too many gaps waiting"

    def __init__(
        self,
        symbols: Sequence[str],
        url: str | None = None,
        stream: str = "advanced",
        rest_url: str = INFO.endpoints.rest_url,
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
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE)
        self.backfill = backfill or BackfillConfig()
        self.max_pending_refills = self.backfill.max_pending
        super().__init__(
            name,
            url or DEFAULT_URLS[stream],
            ws_config or COINBASE_WS_CONFIG,
            self.index.instruments,
            rest_url,
            self.backfill.rest,
        )
        self.stream = stream
        self._parse = parse_advanced if stream == "advanced" else parse_exchange
        self.subscribe_interval = subscribe_interval
        self.shard_by_symbol(max_products)
        # Connections start one subscribe round apart, so that at start-up each subscribes
        # well within Coinbase's 5 seconds and the pacer never holds one back for long.
        self.connect_interval = subscribe_interval * len(self.subscribe_messages(self.shards[0]))
        self.gaps = GapTracker(len(self.index.instruments))
        self.rest_requests = 0
        self.rate_limited = 0
        self._pacer: _Pacer | None = None
        self._last_request = -float("inf")

    @property
    def clients(self) -> list[WsClient]:
        """The WebSocket client of each connection (once running)."""
        return [shard.client for shard in self.shards if shard.client is not None]

    @property
    def refills(self) -> bool:
        return self.backfill.enabled

    def subscribe_messages(self, shard: Shard) -> list[bytes]:
        """The messages that subscribe one connection to its products (trades and heartbeats)."""
        products = shard.symbols
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

    async def subscribe(self, conn: WsConnection, shard: Shard) -> None:
        """Subscribe messages of all connections share one pacer (Coinbase counts them per IP)."""
        if self._pacer is None:
            self._pacer = _Pacer(self.subscribe_interval)
        for message in self.subscribe_messages(shard):
            await self._pacer.wait()
            conn.send(message)

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        return self._parse(frames, recv_ts, self.index, self.name)

    def checked(self, parsed: Parsed, ctx: SourceContext) -> None:
        for code, first, last in self.gaps.check(parsed.batch, parsed.last_ids):
            self.request(Refill(code, first, last), ctx)

    async def fetch_since(self, rest: RestClient, refill: Refill) -> Refilled:
        """The missing ids, paged back from the newest (`after` is Coinbase's older-than)."""
        try:
            return await self._fill(rest, refill)
        finally:
            self.rate_limited = rest.rate_limited

    async def _fill(self, rest: RestClient, refill: Refill) -> Refilled:
        code, first, last = refill.code, refill.first, refill.last
        product = self.instruments[code].raw_symbol
        missing = last - first + 1
        found: dict[int, RestTrade] = {}
        cursor = last + 1  # `after` returns trades older than the cursor, newest first
        problem = ""
        rejects: list[Reject] = []
        max_trades = self.backfill.max_trades
        while cursor > first and len(found) < max_trades:
            limit = min(REST_PAGE_LIMIT, cursor - first, max_trades - len(found))
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
                rejects.append(Reject(msgspec.json.encode(page), f"bad REST trade page: {exc}"))
                break
            finally:
                self.rest_requests += 1
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
        batches: list[TradeBatch] = []
        if found:
            now = time.time_ns() // 1000
            ordered = sorted(found.values(), key=lambda t: t.trade_id)
            batches.append(rest_batch(ordered, code, now, self.index, self.name))
        if len(found) == missing:
            detail = f"recovered all {missing} missing trades over REST"
        else:
            detail = f"recovered {len(found)} of {missing} missing trades over REST"
            if problem:
                detail += f"; {problem}"
            elif len(found) >= max_trades:
                detail += f"; the backfill stops at {max_trades} trades per gap"
            else:
                detail += "; the rest were not on the exchange's trade list"
        return Refilled(batches, self.gap(code, first, last, len(found), detail), rejects)

    async def _pace(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_request + self.backfill.request_interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_request = loop.time()


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
