"""Binance's last price per symbol, sampled over REST: the way some pipelines watch a price.

Every `poll_every` seconds one `GET /api/v3/ticker/price?symbols=[...]` (weight 4, however
many symbols, up to 100 per request here) gives each symbol's last traded price, and each
becomes one trade record: exchange `binance-ticker` (so samples never mix with real trades in
Binance's candles), size 0 (a sample is not volume: candles get open/high/low/close from the
samples and zero volume, their VWAP falls back to the close), side unknown, event time = the
local time of the answer (the endpoint gives none), and the id = that time in milliseconds,
unique per symbol and stable, so a sample is stored once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from tickpipe.records import Disconnect
from tickpipe.sources import SourceContext
from tickpipe.sources.binance import INFO
from tickpipe.sources.binance.parse import InstrumentIndex
from tickpipe.sources.binance.rest import fetch_prices, prices_to_batch
from tickpipe.sources.rest import RestClient, RestConfig, RestError

EXCHANGE = "binance-ticker"
SYMBOLS_PER_REQUEST = 100
POLL_REST_CONFIG = RestConfig(timeout=10.0, attempts=2, backoff_initial=0.5, backoff_max=5.0)


class BinanceTickerSource:
    """Price samples of `symbols` (normalized, e.g. `BTC-USDT`) every `poll_every` seconds."""

    def __init__(
        self,
        symbols: Sequence[str],
        rest_url: str = INFO.endpoints.rest_url,
        poll_every: float = 5.0,
        name: str = EXCHANGE,
        rest_config: RestConfig | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("binance ticker needs at least one symbol")
        if poll_every <= 0:
            raise ValueError(f"poll_every must be above 0 seconds, not {poll_every}")
        self.name = name
        self.rest_url = rest_url
        self.poll_every = poll_every
        self.rest_config = rest_config or POLL_REST_CONFIG
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE)
        raw = [i.raw_symbol for i in self.index.instruments]
        self._chunks = [
            raw[i : i + SYMBOLS_PER_REQUEST] for i in range(0, len(raw), SYMBOLS_PER_REQUEST)
        ]
        self._last_seq = 0

    async def run(self, ctx: SourceContext) -> None:
        """Poll until cancelled; a failed poll is a Disconnect event, never the end."""
        loop = asyncio.get_running_loop()
        async with RestClient(self.rest_url, self.rest_config) as rest:
            due = loop.time()
            while True:
                await self._poll(rest, ctx)
                due += self.poll_every
                now = loop.time()
                if due < now:  # a slow answer: skip the samples that are already late
                    due = now
                await asyncio.sleep(due - now)

    async def _poll(self, rest: RestClient, ctx: SourceContext) -> None:
        prices: dict[str, float] = {}
        try:
            for chunk in self._chunks:
                got, bad = await fetch_prices(rest, chunk)
                prices.update(got)
                for row in bad:
                    ctx.dead_letters.write(self.name, "unreadable ticker row", repr(row))
                ctx.stats.malformed += len(bad)
                ctx.stats.frames += 1
        except RestError as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (418, 429):
                ctx.dead_letters.write(self.name, "ticker request refused", str(exc))
                ctx.stats.malformed += 1
            if ctx.stats.connected:
                ctx.stats.reconnects += 1
            ctx.stats.connected = False
            ctx.event(
                Disconnect(
                    source=self.name,
                    ts=time.time_ns() // 1000,
                    reason=f"poll failed: {exc}",
                    reconnect_in=self.poll_every,
                )
            )
            return
        ctx.stats.connected = True
        unknown = [s for s in prices if s not in self.index.codes]
        for symbol in unknown:
            ctx.dead_letters.write(self.name, f"unknown symbol {symbol!r}", symbol)
        ctx.stats.malformed += len(unknown)
        now = time.time_ns() // 1000
        seq = max(now // 1000, self._last_seq + 1)  # milliseconds; never twice the same
        self._last_seq = seq
        batch = prices_to_batch(prices, self.index, self.name, seq, now)
        if len(batch):
            ctx.stats.trades += len(batch)
            await ctx.emit(batch)
