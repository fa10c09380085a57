"""Tiingo crypto trades over its firehose WebSocket (`wss://api.tiingo.com/crypto`).

Each connection sends one subscribe message, `{"eventName":"subscribe","authorization":token,
"eventData":{"thresholdLevel":5,"tickers":[...]}}` (thresholdLevel 5: trades only), again after
every reconnect. Tiingo documents no ticker limit per subscription; tickpipe puts at most
`max_tickers` (100) on one connection and opens more beyond that, so one subscribe message stays
small. The token never leaves this module in a message: dead letters are redacted here, and the
connection helper is given the token as a secret, so its log lines, Disconnect reasons and
errors show `***` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from tickpipe.sources import SourceContext
from tickpipe.sources.finnhub.aggregated import VenueInstruments, redact
from tickpipe.sources.tiingo.parse import SOURCE, parse_frames, tickers_for
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection, check_ws_url

DEFAULT_URL = "wss://api.tiingo.com/crypto"
THRESHOLD_TRADES = 5  # "Trade Updates per-exchange" (2 would add top-of-book quotes)
MAX_TICKERS = 100

# Tiingo sends a heartbeat ({"messageType":"H"}) to open connections; we ping when idle too.
TIINGO_WS_CONFIG = WsConfig(
    idle_timeout=60.0,
    data_timeout=300.0,
    ping_interval=20.0,
    ping_timeout=10.0,
)


class TiingoSource:
    """Trades of `symbols` (normalized, e.g. `BTC-USD`) from Tiingo's crypto firehose, each
    stamped with the venue it traded on (Tiingo's `gdax` becomes `coinbase`)."""

    def __init__(
        self,
        symbols: Sequence[str],
        token: str | None,
        url: str = DEFAULT_URL,
        name: str = SOURCE,
        ws_config: WsConfig | None = None,
        max_tickers: int = MAX_TICKERS,
    ) -> None:
        if not token:
            raise ValueError("tiingo needs an API token: set TIINGO_TOKEN")
        if not symbols:
            raise ValueError("tiingo needs at least one symbol")
        if max_tickers < 1:
            raise ValueError(f"tiingo max_tickers must be positive, not {max_tickers}")
        check_ws_url(url, [token])
        self.name = name
        self.url = url
        self.index = VenueInstruments(tickers_for(symbols))
        tickers = list(self.index.symbols)
        self.groups = [tickers[i : i + max_tickers] for i in range(0, len(tickers), max_tickers)]
        self.ws_config = ws_config or TIINGO_WS_CONFIG
        self._token = token
        self._seq = 0  # arrival order: Tiingo gives no trade ids

    def __repr__(self) -> str:
        return f"TiingoSource({list(self.index.symbols)!r})"

    def subscribe_message(self, tickers: list[str]) -> bytes:
        """The subscribe request of one connection (it carries the token)."""
        return msgspec.json.encode(
            {
                "eventName": "subscribe",
                "authorization": self._token,
                "eventData": {"thresholdLevel": THRESHOLD_TRADES, "tickers": tickers},
            }
        )

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled; one WebSocket per ticker group."""
        token = self._token

        async def on_frames(frames: list[bytes], recv_ts: int) -> int:
            batch, rejects, data = parse_frames(frames, recv_ts, self.index, self._seq, self.name)
            self._seq += len(batch)
            for reject in rejects:
                payload = redact(reject.payload.decode("utf-8", "replace"), token)
                ctx.dead_letters.write(self.name, reject.reason, payload)
            ctx.stats.malformed += len(rejects)
            if len(batch):
                ctx.stats.trades += len(batch)
                await ctx.emit(batch)
            return data

        def client(tickers: list[str]) -> WsClient:
            message = self.subscribe_message(tickers)

            async def on_connect(conn: WsConnection) -> None:
                conn.send(message)

            return WsClient(
                self.url,
                on_frames,
                name=self.name,
                config=self.ws_config,
                on_connect=on_connect,
                on_disconnect=ctx.event,
                stats=ctx.stats,
                secrets=[token],
            )

        async with asyncio.TaskGroup() as group:
            for tickers in self.groups:
                group.create_task(client(tickers).run())
