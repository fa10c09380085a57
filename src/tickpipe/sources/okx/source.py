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

import urllib.parse
from collections.abc import Sequence
from dataclasses import replace

import msgspec
import numpy as np

from tickpipe.records import TradeBatch
from tickpipe.sources import SourceContext
from tickpipe.sources.feed import Refill, Refilled, Shard, ShardedFeed, rest_rejects
from tickpipe.sources.gaps import IdGaps
from tickpipe.sources.okx import INFO
from tickpipe.sources.okx.backfill import fetch_trades, ids_in, to_batch
from tickpipe.sources.okx.parse import EXCHANGE, InstrumentIndex, OkxTrade, parse_frames
from tickpipe.sources.parsing import Parsed
from tickpipe.sources.rest import RestClient, RestConfig
from tickpipe.sources.ws import WsConfig

STREAMS = ("trades-all", "trades")
PATHS = {"trades-all": "/ws/v5/business", "trades": "/ws/v5/public"}
MAX_PER_CONNECTION = 200  # our choice: OKX caps request size (64 KB), not channels per connection
ARGS_PER_REQUEST = 100  # about 5 KB of JSON per subscribe request
CONNECT_INTERVAL = 0.35  # OKX allows 3 connection requests per second per IP

OKX_WS_CONFIG = WsConfig(idle_timeout=30.0, data_timeout=300.0)


class OkxSource(ShardedFeed):
    """Trades of `symbols` (normalized, e.g. `BTC-USDT`) from OKX spot."""

    reconnect_reason = "planned: server upgrade notice 64008"
    refill_off = "trade ids skipped; backfill is off"

    def __init__(
        self,
        symbols: Sequence[str],
        url: str = INFO.endpoints.url,
        rest_url: str = INFO.endpoints.rest_url,
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
        self.index = InstrumentIndex.for_symbols(symbols, EXCHANGE, spellings)
        super().__init__(
            name,
            _stream_url(url, stream),
            ws_config or OKX_WS_CONFIG,
            self.index.instruments,
            rest_url,
            rest_config,
        )
        self.stream = stream
        self.ping_after = ping_after
        self.connect_interval = connect_interval
        self.backfill = backfill
        self.backfill_limit = backfill_limit
        self.shard_by_symbol(max_per_connection)
        self.gaps = GapDetector(len(self.instruments))
        # After a reconnect's fetch: (after id, newest id, trades) per instrument, so the hole
        # the live feed then shows is answered from them instead of a second request.
        self._recent: dict[int, tuple[int, int, list[OkxTrade]]] = {}

    @property
    def refills(self) -> bool:
        return self.backfill

    def connection_config(self) -> WsConfig:
        """`ws_config` with OKX's text `ping` after `ping_after` seconds without a frame."""
        return replace(
            self.ws_config, app_ping="ping", app_ping_idle=self.ping_after, app_ping_interval=None
        )

    def subscribe_messages(self, shard: Shard) -> list[bytes]:
        """`subscribe` requests of `ARGS_PER_REQUEST` instruments each."""
        return [
            msgspec.json.encode(
                {
                    "op": "subscribe",
                    "args": [
                        {"channel": self.stream, "instId": s}
                        for s in shard.symbols[lo : lo + ARGS_PER_REQUEST]
                    ],
                }
            )
            for lo in range(0, len(shard.symbols), ARGS_PER_REQUEST)
        ]

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        return parse_frames(frames, recv_ts, self.index, self.name)

    def checked(self, parsed: Parsed, ctx: SourceContext) -> None:
        for code, first, last in self.gaps.check(parsed.batch, parsed.first_seq):
            self.request(Refill(code, first, last), ctx)

    def reconnected(self, shard: Shard, ctx: SourceContext) -> None:
        """Fetch everything after the last trade seen of each instrument (on `trades-all`,
        whose ids are those of the REST history)."""
        if not self.backfill or self.stream != "trades-all":
            return
        for code in shard.codes:
            mark = int(self.gaps.last[code])
            if mark >= 0:
                self.request(Refill(code, mark + 1, mark), ctx)

    async def fetch_since(self, rest: RestClient, refill: Refill) -> Refilled:
        code, first, last = refill.code, refill.first, refill.last
        inst_id = self.instruments[code].raw_symbol
        if first > last:
            return await self._fetch_reconnect(rest, code, inst_id, first - 1)
        missing = last - first + 1
        recent = self._recent.get(code)
        if recent is not None and recent[0] < first and last <= recent[1]:
            got = ids_in(recent[2], first, last)  # already fetched after the reconnect
            detail = f"recovered {got} of {missing} trades over REST after reconnect"
            return Refilled(gap=self.gap(code, first, last, got, detail))
        fetched = await fetch_trades(
            rest, inst_id, after_id=first - 1, before_id=last + 1, limit=self.backfill_limit
        )
        got = ids_in(fetched.trades, first, last)
        detail = f"recovered {got} of {missing} trades over REST"
        if fetched.limited:
            detail += f" (stopped at the limit of {self.backfill_limit})"
        elif got < missing:
            detail += "; the rest were not returned"
        batches = []
        if fetched.trades:
            batch = to_batch(fetched.trades, self.index, self.name)
            self.gaps.check(batch)  # raises the mark; holes inside it are already this gap
            batches.append(batch)
        gap = self.gap(code, first, last, got, detail)
        return Refilled(batches, gap, rest_rejects(fetched.bad_rows))

    async def _fetch_reconnect(
        self, rest: RestClient, code: int, inst_id: str, after_id: int
    ) -> Refilled:
        """Everything after the last trade seen before a reconnect.

        Reports the trades as a gap only when no live trade has arrived since; otherwise the
        live feed's own gap (first live id minus the mark) is reported from the same fetch.
        """
        fetched = await fetch_trades(rest, inst_id, after_id=after_id, limit=self.backfill_limit)
        rejects = rest_rejects(fetched.bad_rows)
        if not fetched.trades:
            return Refilled(rejects=rejects)
        newest = max(t.tradeId for t in fetched.trades)
        oldest = min(t.tradeId for t in fetched.trades)
        self._recent[code] = (after_id, newest, fetched.trades)
        quiet = int(self.gaps.last[code]) <= after_id
        batch = to_batch(fetched.trades, self.index, self.name)
        found = self.gaps.check(batch)
        gap = None
        if quiet:
            first = oldest if fetched.limited else after_id + 1
            got = ids_in(fetched.trades, first, newest)
            detail = f"traded while disconnected: recovered {got} of {newest - first + 1} over REST"
            if fetched.limited:
                detail += f" (stopped at the limit of {self.backfill_limit})"
            gap = self.gap(code, first, newest, got, detail)
            found = [g for g in found if g[2] < first]  # the part before the limit
        more = [Refill(c, f, la) for c, f, la in found]
        return Refilled([batch], gap, rejects, more)


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
