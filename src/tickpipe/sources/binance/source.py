"""Binance spot trades over the combined-stream WebSocket endpoint, on the `ShardedFeed`.

Streams are named in the URL (`/stream?streams=btcusdt@trade/ethusdt@trade`, up to
`MAX_STREAMS` a connection, more connections beyond), so every reconnect subscribes again by
itself and no SUBSCRIBE message counts against Binance's limit of five incoming messages per
second. Consecutive trade ids per symbol reveal lost trades; they are fetched again over REST
through `fetch_since` (see `backfill`), as is everything a reconnect may have missed, and
`Gap` events say what came back.
"""

from __future__ import annotations

from collections.abc import Sequence

from tickpipe.records import TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.binance import INFO
from tickpipe.sources.binance.backfill import Backfill, BackfillConfig
from tickpipe.sources.binance.parse import EXCHANGE, InstrumentIndex, parse_frames
from tickpipe.sources.feed import Refill, Refilled, Shard, ShardedFeed, split
from tickpipe.sources.gaps import IdGaps
from tickpipe.sources.parsing import Parsed
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsConfig

STREAMS = ("trade", "aggTrade")
MAX_STREAMS = 1024  # per connection, from Binance's WebSocket limits

# Binance pings every 20 s and cuts every connection at 24 h.
BINANCE_WS_CONFIG = WsConfig(
    idle_timeout=60.0,
    data_timeout=300.0,
    max_lifetime=23.5 * 3600,
)


class BinanceSource(ShardedFeed):
    """Trades of `symbols` (normalized, e.g. `BTC-USDT`) from Binance spot.

    `rest_url=None` switches the REST backfill off: gaps are then only reported.
    """

    refill_off = "trade ids skipped; REST backfill is off"

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = INFO.endpoints.url,
        stream: str = "trade",
        name: str = "binance",
        ws_config: WsConfig | None = None,
        rest_url: str | None = INFO.endpoints.rest_url,
        rest_config: RestConfig | None = None,
        backfill_config: BackfillConfig | None = None,
        max_streams_per_connection: int = MAX_STREAMS,
    ) -> None:
        if stream not in STREAMS:
            raise ValueError(f"binance stream must be one of {', '.join(STREAMS)}, not {stream!r}")
        if not symbols:
            raise ValueError("binance needs at least one symbol")
        if not 1 <= max_streams_per_connection <= MAX_STREAMS:
            raise ValueError(f"binance max_streams_per_connection must be 1 to {MAX_STREAMS}")
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE)
        super().__init__(
            name,
            url.rstrip("/"),
            ws_config or BINANCE_WS_CONFIG,
            self.index.instruments,
            rest_url,
            rest_config,
        )
        streams = [f"{i.raw_symbol.lower()}@{stream}" for i in self.index.instruments]
        self.shard(streams, split(streams, max_streams_per_connection))
        self.stream = stream
        self.backfill_config = backfill_config or BackfillConfig()
        self.backfill = Backfill(self.index, stream, name, self.backfill_config)
        self.gaps = GapDetector(len(self.index.instruments))

    def connection_url(self, shard: Shard) -> str:
        """The combined-stream URL naming the streams of `shard`."""
        return f"{self.url}/stream?streams={'/'.join(shard.symbols)}"

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled, reconnecting and backfilling (with
        the `backfill_config` set at the time)."""
        self.max_pending_refills = self.backfill_config.max_pending
        self.backfill = Backfill(self.index, self.stream, self.name, self.backfill_config)
        await super().run(ctx)

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        return parse_frames(frames, recv_ts, self.index, self.name)

    def checked(self, parsed: Parsed, ctx: SourceContext) -> None:
        batch = parsed.batch
        for hole in self.gaps.check(batch):
            self.request(hole, ctx)
        if self.refills:
            self.backfill.seen(batch.instrument, batch.seq)

    def reconnected(self, shard: Shard, ctx: SourceContext) -> None:
        """Catch up the symbols of `shard` that had traded, unless a live trade names their
        hole first."""
        if self.refills:
            for refill in self.backfill.reconnected(shard.codes, self.gaps.last):
                self.request(refill, ctx)

    async def fetch_since(self, rest: RestClient, refill: Refill) -> Refilled:
        return await self.backfill.fetch(rest, refill)


class GapDetector(IdGaps):
    """Binance's trade (and aggregate trade) ids are consecutive per symbol."""

    def check(self, batch: TradeBatch) -> list[Refill]:
        """The refills of the ids this batch shows missing; marks the batch seen."""
        return [Refill(*h) for h in self.holes(batch.instrument, batch.seq, batch.ts)]
