"""Bitstamp trades over WebSocket v2 (`live_trades_<pair>`), with REST backfill after reconnects.

Every connection subscribes its pairs with `bts:subscribe` (again after each reconnect), sends
`{"event": "bts:heartbeat"}` after `ping_after` seconds without a frame (the server answers it;
the shared WebSocket helper sends it, `WsConfig.app_ping_idle`),
and is replaced at once when the server sends `bts:request_reconnect`. Bitstamp trade ids are
global across pairs, so lost trades cannot be detected from them; instead, after every
reconnect, each pair's trades newer than the last id seen are fetched over REST.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import msgspec
import numpy as np

from tickpipe.records import TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.bitstamp import INFO
from tickpipe.sources.bitstamp.backfill import fetch_since, to_batch
from tickpipe.sources.bitstamp.parse import (
    CHANNEL_PREFIX,
    EXCHANGE,
    InstrumentIndex,
    parse_frames,
)
from tickpipe.sources.feed import Refill, Refilled, Shard, ShardedFeed, rest_rejects
from tickpipe.sources.parsing import Parsed
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsConfig

log = logging.getLogger(__name__)

MAX_PER_CONNECTION = 100  # our choice; Bitstamp documents no channel limit per connection
HEARTBEAT = b'{"event":"bts:heartbeat"}'
TOO_OLD = "disconnected for over a day: older trades cannot be fetched"

BITSTAMP_WS_CONFIG = WsConfig(idle_timeout=30.0, data_timeout=300.0)


class BitstampSource(ShardedFeed):
    """Trades of `symbols` (normalized, e.g. `BTC-USD`) from Bitstamp."""

    reconnect_reason = "planned: bts:request_reconnect"

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = INFO.endpoints.url,
        rest_url: str = INFO.endpoints.rest_url,
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
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE, spellings)
        super().__init__(
            name,
            url,
            ws_config or BITSTAMP_WS_CONFIG,
            self.index.instruments,
            rest_url,
            rest_config,
        )
        self.ping_after = ping_after
        self.backfill = backfill
        self.shard_by_symbol(max_per_connection)
        n = len(self.instruments)
        self.last_id = np.full(n, -1, np.int64)  # highest trade id seen per pair
        self.last_ts = np.zeros(n, np.int64)  # its trade time, µs
        self.awaiting = np.zeros(n, np.bool_)  # reconnected, no live trade of the pair yet
        self.resumed = np.full(n, -1, np.int64)  # first live id after the latest reconnect

    @property
    def refills(self) -> bool:
        return self.backfill

    def connection_config(self) -> WsConfig:
        """`ws_config` with Bitstamp's heartbeat after `ping_after` seconds without a frame."""
        ping_after = self.ping_after
        return replace(
            self.ws_config, app_ping=HEARTBEAT, app_ping_idle=ping_after, app_ping_interval=None
        )

    def subscribe_messages(self, shard: Shard) -> list[bytes]:
        return [
            msgspec.json.encode(
                {"event": "bts:subscribe", "data": {"channel": CHANNEL_PREFIX + raw}}
            )
            for raw in shard.symbols
        ]

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        return parse_frames(frames, recv_ts, self.index, self.name)

    def checked(self, parsed: Parsed, ctx: SourceContext) -> None:
        batch = parsed.batch
        if not len(batch):
            return
        self._seen(batch)
        waiting = self.awaiting[batch.instrument]
        if waiting.any():
            for code in np.unique(batch.instrument[waiting]).tolist():
                self.resumed[code] = batch.seq[batch.instrument == code].min()
                self.awaiting[code] = False

    def _seen(self, batch: TradeBatch) -> None:
        inst, seq = batch.instrument, batch.seq
        newer = seq > self.last_id[inst]
        np.maximum.at(self.last_id, inst[newer], seq[newer])
        hit = seq[newer] == self.last_id[inst[newer]]
        self.last_ts[inst[newer][hit]] = batch.ts[newer][hit]

    def reconnected(self, shard: Shard, ctx: SourceContext) -> None:
        """Each pair's trades newer than the last id seen (ids are global across pairs, so
        what was lost shows only from what the REST history holds)."""
        if not self.backfill:
            return
        for code in shard.codes:
            if self.last_id[code] >= 0:
                self.awaiting[code] = True
                mark = int(self.last_id[code])
                self.request(Refill(code, mark + 1, mark, int(self.last_ts[code])), ctx)

    async def fetch_since(self, rest: RestClient, refill: Refill) -> Refilled:
        code, after_id = refill.code, refill.first - 1
        inst = self.instruments[code]
        try:
            trades, bad, complete = await fetch_since(
                rest, inst.raw_symbol, after_id, refill.after_ts / 1_000_000
            )
        except Exception as exc:  # the hole's answer: the size of what was lost is unknown
            log.warning("%s: backfill failed: %r", self.name, exc)
            detail = f"REST backfill after reconnect failed: {exc}"
            return Refilled(gap=self.gap(code, after_id + 1, after_id + 1, 0, detail))
        rejects = rest_rejects(bad)
        if not trades:
            if complete:
                return Refilled(rejects=rejects)
            detail = "disconnected for over a day: older trades cannot be fetched"
            return Refilled(
                gap=self.gap(code, after_id + 1, after_id + 1, 0, detail), rejects=rejects
            )
        batch = to_batch(trades, code, self.index, self.name)
        self._seen(batch)
        # Trades from the first live one after the reconnect on came live too: not missed.
        resumed = -1 if self.awaiting[code] else int(self.resumed[code])
        missed = [t.tid for t in trades if resumed < 0 or t.tid < resumed]
        detail = f"recovered {len(missed)} trades made while disconnected over REST"
        if not complete:
            detail += f"; {TOO_OLD}"
        gap = None
        if missed or not complete:
            first, last = (min(missed), max(missed)) if missed else (after_id + 1, after_id + 1)
            gap = self.gap(code, first, last, len(missed), detail)
        return Refilled([batch], gap, rejects)
