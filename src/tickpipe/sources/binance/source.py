"""Binance spot trades over the combined-stream WebSocket endpoint.

Streams are named in the URL (`/stream?streams=btcusdt@trade/ethusdt@trade`), so every
reconnect subscribes again by itself and no SUBSCRIBE message counts against Binance's limit of
five incoming messages per second. Consecutive trade ids per symbol reveal lost trades; they
are fetched again over REST (see `backfill`), as is everything a reconnect may have missed,
and `Gap` events say what came back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tickpipe.records import Gap, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.binance.backfill import BackfillConfig, Backfiller
from tickpipe.sources.binance.parse import EXCHANGE, InstrumentIndex, parse_frames
from tickpipe.sources.binance.rest import DEFAULT_REST_URL
from tickpipe.sources.feed import gap_event
from tickpipe.sources.gaps import IdGaps
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection

DEFAULT_URL = "wss://stream.binance.com:9443"
STREAMS = ("trade", "aggTrade")
MAX_STREAMS = 1024  # per connection, from Binance's WebSocket limits

# Binance pings every 20 s and cuts every connection at 24 h.
BINANCE_WS_CONFIG = WsConfig(
    idle_timeout=60.0,
    data_timeout=300.0,
    max_lifetime=23.5 * 3600,
)


class BinanceSource:
    """Trades of `symbols` (normalized, e.g. `BTC-USDT`) from Binance spot.

    `rest_url=None` switches the REST backfill off: gaps are then only reported.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = DEFAULT_URL,
        stream: str = "trade",
        name: str = "binance",
        ws_config: WsConfig | None = None,
        rest_url: str | None = DEFAULT_REST_URL,
        rest_config: RestConfig | None = None,
        backfill_config: BackfillConfig | None = None,
    ) -> None:
        if stream not in STREAMS:
            raise ValueError(f"binance stream must be one of {', '.join(STREAMS)}, not {stream!r}")
        if not symbols:
            raise ValueError("binance needs at least one symbol")
        self.name = name
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE)
        if len(self.index.instruments) > MAX_STREAMS:
            raise ValueError(f"binance allows at most {MAX_STREAMS} streams per connection")
        streams = "/".join(f"{i.raw_symbol.lower()}@{stream}" for i in self.index.instruments)
        self.url = f"{url.rstrip('/')}/stream?streams={streams}"
        self.stream = stream
        self.ws_config = ws_config or BINANCE_WS_CONFIG
        self.rest_url = rest_url
        self.rest_config = rest_config or RestConfig()
        self.backfill_config = backfill_config or BackfillConfig()
        self.backfiller: Backfiller | None = None
        self._gaps = GapDetector(len(self.index.instruments))

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled, reconnecting and backfilling."""
        if self.rest_url is None:
            await self._stream(ctx, None)
            return
        async with RestClient(self.rest_url, self.rest_config) as rest:
            backfiller = Backfiller(
                rest, self.index, self.stream, ctx, self.name, self.backfill_config
            )
            self.backfiller = backfiller
            task = asyncio.create_task(backfiller.run(), name=f"{self.name}:backfill")
            try:
                await self._stream(ctx, backfiller)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _stream(self, ctx: SourceContext, backfiller: Backfiller | None) -> None:
        async def on_frames(frames: list[bytes], recv_ts: int) -> int:
            batch, rejects, *_ = parse_frames(frames, recv_ts, self.index, self.name)
            for reject in rejects:
                ctx.dead_letters.write(self.name, reject.reason, reject.payload)
            ctx.stats.malformed += len(rejects)
            if not len(batch):
                return 0
            if backfiller is None:
                for gap in self._gaps.check(batch):
                    ctx.event(gap)
            else:
                for code, first, last in self._gaps.ranges(batch):
                    backfiller.gap(code, first, last)
                backfiller.seen(batch.instrument, batch.seq)
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)
            return len(batch)

        async def on_connect(conn: WsConnection) -> None:
            if backfiller is not None:
                backfiller.reconnected(self._gaps.last)

        client = WsClient(
            self.url,
            on_frames,
            name=self.name,
            config=self.ws_config,
            on_connect=on_connect,
            on_disconnect=ctx.event,
            stats=ctx.stats,
        )
        await client.run()


class GapDetector(IdGaps):
    """Binance's trade (and aggregate trade) ids are consecutive per symbol."""

    def check(self, batch: TradeBatch) -> list[Gap]:
        """Gap events (nothing recovered) for the ids this batch shows missing."""
        detail = "trade ids skipped; REST backfill is off"
        return [
            gap_event(batch.source, batch.instruments[code], first, last, 0, detail)
            for code, first, last in self.ranges(batch)
        ]

    def ranges(self, batch: TradeBatch) -> list[tuple[int, int, int]]:
        """(instrument code, first missing id, last missing id) for each hole this batch shows."""
        return [h[:3] for h in self.holes(batch.instrument, batch.seq, batch.ts)]
