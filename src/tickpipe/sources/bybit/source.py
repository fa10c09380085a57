"""Bybit spot trades over the v5 public WebSocket (`publicTrade.<SYMBOL>`), with REST catch-up.

Bybit spot takes at most 10 topics per `subscribe` request and at most 21,000 characters of
topics per connection, so topics go out in requests of 10 and more connections open beyond
`max_topics_per_connection`. Every (re)connect subscribes again. The client must send
`{"op": "ping"}` (Bybit recommends every 20 s), which the shared WebSocket helper sends
(`WsConfig.app_ping`); the `pong` keeps the any-frame timer fed.

Spot trade ids are not consecutive per symbol, so lost trades cannot be counted. After a
reconnect, each symbol that had traded is caught up from `GET /v5/market/recent-trade` (the
last 60 spot trades, no paging): trades since the last one seen are emitted, and a `Gap` says
how many came back and whether the REST window reached back far enough to hold them all.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import replace

import msgspec
import numpy as np

from tickpipe.records import Gap, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.bybit import INFO
from tickpipe.sources.bybit.parse import (
    EXCHANGE,
    TOPIC,
    ArrivalOrder,
    InstrumentIndex,
    columns,
    parse_frames,
    parse_recent_trades,
)
from tickpipe.sources.feed import Refill, Refilled, Shard, ShardedFeed
from tickpipe.sources.parsing import Parsed
from tickpipe.sources.rest import RestClient, RestConfig, RestError
from tickpipe.sources.ws import WsConfig

RECENT_TRADES_PATH = "/v5/market/recent-trade"
MAX_ARGS_PER_REQUEST = 10  # spot, from Bybit's "Public channel - Args limits"
MAX_ARGS_CHARS = 21_000  # length of all args of one public connection
MAX_TOPICS_PER_CONNECTION = 200  # our choice: keeps a reconnect's catch-up small
RECENT_TRADES_LIMIT = 60  # the most recent-trade returns for spot
PING_INTERVAL = 20.0
MAX_PENDING_CATCH_UPS = 10_000

BYBIT_WS_CONFIG = WsConfig(
    idle_timeout=45.0,  # our pings every 20 s bring a pong even when no symbol trades
    data_timeout=600.0,
)


def connection_groups(topics: Sequence[str], max_topics: int) -> list[list[str]]:
    """Topics split into connections of at most `max_topics`, each within Bybit's 21,000
    characters of args (counted as the JSON array: quotes and commas included)."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 2
    for topic in topics:
        cost = len(topic) + 3
        if current and (len(current) >= max_topics or size + cost > MAX_ARGS_CHARS):
            groups.append(current)
            current, size = [], 2
        current.append(topic)
        size += cost
    if current:
        groups.append(current)
    return groups


class BybitSource(ShardedFeed):
    """Trades of `symbols` (normalized, e.g. `BTC-USDT`, or Bybit's `BTCUSDT`) from Bybit spot."""

    refill_off = "catch-up is off"
    refill_full = "catch-up queue full"
    max_pending_refills = MAX_PENDING_CATCH_UPS

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = INFO.endpoints.url,
        rest_url: str | None = INFO.endpoints.rest_url,
        name: str = "bybit",
        ws_config: WsConfig | None = None,
        rest_config: RestConfig | None = None,
        app_ping_interval: float = PING_INTERVAL,
        max_topics_per_connection: int = MAX_TOPICS_PER_CONNECTION,
    ) -> None:
        if not symbols:
            raise ValueError("bybit needs at least one symbol")
        if max_topics_per_connection < 1:
            raise ValueError("bybit max_topics_per_connection must be at least 1")
        if app_ping_interval <= 0:
            raise ValueError("bybit app_ping_interval must be positive (Bybit needs pings)")
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE)
        super().__init__(
            name, url, ws_config or BYBIT_WS_CONFIG, self.index.instruments, rest_url, rest_config
        )
        topics = [f"{TOPIC}.{i.raw_symbol}" for i in self.index.instruments]
        code = {topic: n for n, topic in enumerate(topics)}
        groups = connection_groups(topics, max_topics_per_connection)
        self.shard(topics, [[code[topic] for topic in group] for group in groups])
        self.app_ping_interval = app_ping_interval
        self.arrival = ArrivalOrder()
        self.last = LastSeen(len(self.index.instruments))
        self._req_ids = itertools.count(1)
        self._ping_ids = itertools.count(1)

    def ping_message(self) -> bytes:
        """One `{"op": "ping"}` (each with its own `req_id`)."""
        return msgspec.json.encode({"req_id": f"ping-{next(self._ping_ids)}", "op": "ping"})

    def connection_config(self) -> WsConfig:
        """`ws_config` with Bybit's application ping every `app_ping_interval` seconds."""
        return replace(
            self.ws_config,
            app_ping=self.ping_message,
            app_ping_interval=self.app_ping_interval,
            app_ping_idle=None,
        )

    def subscribe_messages(self, shard: Shard) -> list[bytes]:
        """`subscribe` requests for `shard`'s topics, 10 to a request as Bybit spot requires."""
        topics = shard.symbols
        return [
            msgspec.json.encode(
                {
                    "req_id": str(next(self._req_ids)),
                    "op": "subscribe",
                    "args": list(topics[i : i + MAX_ARGS_PER_REQUEST]),
                }
            )
            for i in range(0, len(topics), MAX_ARGS_PER_REQUEST)
        ]

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        return parse_frames(frames, recv_ts, self.index, self.arrival, self.name)

    def checked(self, parsed: Parsed, ctx: SourceContext) -> None:
        if len(parsed.batch):
            self.last.update(parsed.batch)

    def reconnected(self, shard: Shard, ctx: SourceContext) -> None:
        """Catch up every symbol of `shard` that had traded (before it subscribes again, so no
        trade of the new connection moves the marks)."""
        for code in shard.codes:
            if self.last.ts[code] < 0:
                continue  # nothing seen yet: nothing to catch up from
            after_seq = int(self.last.seq[code])
            refill = Refill(
                code, after_seq + 1, after_seq + 1, int(self.last.ts[code]), self.last.ids[code]
            )
            self.request(refill, ctx)

    async def fetch_since(self, rest: RestClient, refill: Refill) -> Refilled:
        """Bybit's last 60 trades, cut to those after the last one seen (spot trade ids are
        not consecutive, so how many were lost is known only when the window reaches back)."""
        instrument = self.instruments[refill.code]
        params = {
            "category": "spot",
            "symbol": instrument.raw_symbol,
            "limit": RECENT_TRADES_LIMIT,
        }
        try:
            trades = parse_recent_trades(await rest.get_json(RECENT_TRADES_PATH, params))
        except (RestError, ValueError) as exc:
            return Refilled(gap=self._gap(refill, 0, refill.first, f"catch-up failed: {exc}"))
        trades = [t for t in trades if t.symbol == instrument.raw_symbol]
        since_ms = refill.after_ts // 1000
        newer = [
            t
            for t in trades
            if t.time > since_ms or (t.time == since_ms and t.id != refill.after_id)
        ]
        reaches_back = any(t.id == refill.after_id or t.time < since_ms for t in trades)
        if not newer and reaches_back:
            return Refilled()  # nothing traded while we were away
        batch = columns(
            newer,
            [refill.code] * len(newer),
            time.time_ns() // 1000,
            self.index,
            self.arrival,
            self.name,
        )
        last = int(batch.seq.max()) if len(batch) else refill.first
        if reaches_back:
            detail = (
                f"refetched all {len(newer)} trades since the last one seen over REST "
                "recent-trade (the trades of the new connection included)"
            )
        else:
            detail = (
                f"refetched {len(newer)} trades over REST recent-trade, which holds only the "
                f"last {RECENT_TRADES_LIMIT}: older trades since the last one seen are lost "
                "and cannot be counted (spot trade ids are not consecutive)"
            )
        return Refilled([batch], self._gap(refill, len(newer), last, detail))

    def _gap(self, refill: Refill, recovered: int, last: int, detail: str) -> Gap:
        return self.gap(refill.code, refill.first, max(last, refill.first), recovered, detail)


class LastSeen:
    """The newest trade seen per instrument (time, id, order key): where a catch-up starts."""

    def __init__(self, instruments: int) -> None:
        self.ts = np.full(instruments, -1, np.int64)
        self.seq = np.zeros(instruments, np.int64)
        self.ids: list[str] = [""] * instruments

    def update(self, batch: TradeBatch) -> None:
        inst, ts = batch.instrument, batch.ts
        order = np.lexsort((batch.seq, ts, inst))  # the newest trade of each instrument last
        inst_sorted = inst[order]
        ends = np.ones(len(order), np.bool_)
        ends[:-1] = inst_sorted[:-1] != inst_sorted[1:]
        ids = batch.trade_ids()
        for i in order[ends]:
            code = batch.instrument[i]
            if batch.ts[i] >= self.ts[code]:
                self.ts[code] = batch.ts[i]
                self.seq[code] = batch.seq[i]
                self.ids[code] = str(ids[i])
