"""Binance spot trades over the combined-stream WebSocket endpoint.

Streams are named in the URL (`/stream?streams=btcusdt@trade/ethusdt@trade`), so every
reconnect subscribes again by itself and no SUBSCRIBE message counts against Binance's limit of
five incoming messages per second. Consecutive trade ids per symbol reveal lost trades, which
are reported as `Gap` events.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from tickpipe.records import Gap, TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.binance.parse import EXCHANGE, InstrumentIndex, parse_frames
from tickpipe.sources.ws import WsClient, WsConfig

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
    """Trades of `symbols` (normalized, e.g. `BTC-USDT`) from Binance spot."""

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = DEFAULT_URL,
        stream: str = "trade",
        name: str = "binance",
        ws_config: WsConfig | None = None,
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
        self.ws_config = ws_config or BINANCE_WS_CONFIG
        self._gaps = GapDetector(len(self.index.instruments))

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled, reconnecting as needed."""

        async def on_frames(frames: list[bytes], recv_ts: int) -> int:
            batch, rejects = parse_frames(frames, recv_ts, self.index, self.name)
            for reject in rejects:
                ctx.dead_letters.write(self.name, reject.reason, reject.payload)
            ctx.stats.malformed += len(rejects)
            if not len(batch):
                return 0
            for gap in self._gaps.check(batch):
                ctx.event(gap)
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)
            return len(batch)

        client = WsClient(
            self.url,
            on_frames,
            name=self.name,
            config=self.ws_config,
            on_disconnect=ctx.event,
            stats=ctx.stats,
        )
        await client.run()


class GapDetector:
    """Finds missing trade ids per instrument from the highest id seen so far.

    Ids at or below that mark are duplicates or late arrivals and never a gap, so reordering
    inside a batch costs nothing; reordering across batches can report a gap that the late
    trades then fill (the engine sees them all either way).
    """

    def __init__(self, instruments: int) -> None:
        self.last = np.full(instruments, -1, np.int64)  # -1: nothing seen yet

    def check(self, batch: TradeBatch) -> list[Gap]:
        inst = batch.instrument
        seq = batch.seq
        fresh = seq > self.last[inst]
        inst, seq = inst[fresh], seq[fresh]
        if not len(seq):
            return []
        order = np.lexsort((seq, inst))
        inst, seq = inst[order], seq[order]
        prev = np.empty_like(seq)
        prev[1:] = seq[:-1]
        starts = np.ones(len(seq), np.bool_)
        starts[1:] = inst[1:] != inst[:-1]
        prev[starts] = self.last[inst[starts]]
        missing = (seq > prev + 1) & (prev >= 0)
        np.maximum.at(self.last, inst, seq)
        if not missing.any():
            return []
        now = time.time_ns() // 1000
        gaps = []
        for i in np.flatnonzero(missing):
            instrument = batch.instruments[inst[i]]
            gaps.append(
                Gap(
                    source=batch.source,
                    exchange=instrument.exchange,
                    symbol=instrument.symbol,
                    first_missing=int(prev[i]) + 1,
                    last_missing=int(seq[i]) - 1,
                    ts=now,
                    recovered=0,
                    detail="trade ids skipped; REST backfill not implemented yet",
                )
            )
        return gaps
