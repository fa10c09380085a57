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

import itertools
from collections.abc import Sequence
from dataclasses import replace

import msgspec

from tickpipe.records import TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.feed import Refill, Refilled, Shard, ShardedFeed
from tickpipe.sources.gaps import IdGaps
from tickpipe.sources.kraken import INFO
from tickpipe.sources.kraken.backfill import backfill_gap
from tickpipe.sources.kraken.parse import EXCHANGE, InstrumentIndex, parse_frames
from tickpipe.sources.parsing import Parsed
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsConfig

# Kraken documents no per-connection symbol cap for v2 public channels, only a per-connection
# rate limit on requests; a modest chunk keeps one subscribe request (and its 50-trade
# snapshots) per connection small.
MAX_SYMBOLS_PER_CONNECTION = 100
MAX_PENDING_GAPS = 1000

KRAKEN_WS_CONFIG = WsConfig(
    idle_timeout=10.0,  # heartbeats come about once a second
    data_timeout=600.0,  # quiet pairs can go minutes without a trade
)


class KrakenSource(ShardedFeed):
    """Trades of `symbols` (normalized, e.g. `BTC-USD`, or Kraken's `XBT/USD`) from Kraken."""

    refill_off = "trade ids skipped; REST backfill is off"
    refill_full = "trade ids skipped; backfill queue full"
    max_pending_refills = MAX_PENDING_GAPS

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = INFO.endpoints.url,
        rest_url: str | None = INFO.endpoints.rest_url,
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
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE)
        super().__init__(
            name, url, ws_config or KRAKEN_WS_CONFIG, self.index.instruments, rest_url, rest_config
        )
        self.shard_by_symbol(max_symbols_per_connection)
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

    def subscribe_messages(self, shard: Shard) -> list[bytes]:
        return [self.subscribe_message(shard.symbols)]

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

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        return parse_frames(frames, recv_ts, self.index, self.name)

    def checked(self, parsed: Parsed, ctx: SourceContext) -> None:
        for gap in self.gaps.check(parsed.batch):
            self.request(gap, ctx)

    async def fetch_since(self, rest: RestClient, refill: Refill) -> Refilled:
        """The missing ids, fetched from the time of the trade before them."""
        batch, recovered, detail = await backfill_gap(rest, refill, self.instruments, self.name)
        gap = self.gap(refill.code, refill.first, refill.last, recovered, detail)
        return Refilled([batch], gap)


class GapDetector(IdGaps):
    """Kraken v2 trade ids are sequence numbers per pair; each hole carries the time of the
    trade before it, where the REST backfill starts."""

    def check(self, batch: TradeBatch) -> list[Refill]:
        return [Refill(*h) for h in self.holes(batch.instrument, batch.seq, batch.ts)]
