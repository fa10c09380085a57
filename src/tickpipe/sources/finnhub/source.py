"""Finnhub crypto trades over its WebSocket (`wss://ws.finnhub.io?token=...`).

Finnhub authenticates in the URL and allows one open connection per API key, so every symbol
goes over one connection (a second one would compete with the first for the same key); each
symbol is one `{"type":"subscribe","symbol":"BINANCE:BTCUSDT"}` message, sent again after every
reconnect. The token never leaves this module in a message: dead letters are redacted here, and
the connection helper is given the token as a secret, so its log lines, Disconnect reasons and
errors show `***` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tickpipe.sources import SourceContext
from tickpipe.sources.finnhub.aggregated import redact, with_token
from tickpipe.sources.finnhub.parse import (
    DEFAULT_VENUES,
    SOURCE,
    FinnhubInstruments,
    parse_frames,
)
from tickpipe.sources.ws import WsClient, WsConfig, WsConnection, check_ws_url

DEFAULT_URL = "wss://ws.finnhub.io"

# Finnhub sends {"type":"ping"} to idle connections; a quiet pair can go minutes without trades.
FINNHUB_WS_CONFIG = WsConfig(
    idle_timeout=60.0,
    data_timeout=300.0,
    ping_interval=20.0,
    ping_timeout=10.0,
)


class FinnhubSource:
    """Trades of `symbols` (`binance:BTC-USDT`, `BINANCE:BTCUSDT`, or a bare pair subscribed on
    each of `venues`) from Finnhub, each stamped with the venue it traded on."""

    def __init__(
        self,
        symbols: Sequence[str],
        token: str | None,
        url: str = DEFAULT_URL,
        venues: Sequence[str] = DEFAULT_VENUES,
        name: str = SOURCE,
        ws_config: WsConfig | None = None,
    ) -> None:
        if not token:
            raise ValueError("finnhub needs an API token: set FINNHUB_TOKEN")
        if not symbols:
            raise ValueError("finnhub needs at least one symbol")
        self._url = with_token(url, token)
        check_ws_url(self._url, [token])
        self.name = name
        self.index = FinnhubInstruments.for_symbols(symbols, venues)
        self.ws_config = ws_config or FINNHUB_WS_CONFIG
        self._token = token
        self._seq = 0  # arrival order: Finnhub gives no trade ids

    @property
    def subscriptions(self) -> list[str]:
        """Finnhub's spelling of every subscribed symbol (`BINANCE:BTCUSDT`)."""
        return list(self.index.by_raw)

    def __repr__(self) -> str:  # never the URL: it holds the token
        return f"FinnhubSource({self.subscriptions!r})"

    async def run(self, ctx: SourceContext) -> None:
        """Stream trades into `ctx.emit` until cancelled, reconnecting and resubscribing."""
        token = self._token

        async def on_connect(conn: WsConnection) -> None:
            for raw in self.index.by_raw:
                conn.send(msgspec.json.encode({"type": "subscribe", "symbol": raw}))

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

        client = WsClient(
            self._url,
            on_frames,
            name=self.name,
            config=self.ws_config,
            on_connect=on_connect,
            on_disconnect=ctx.event,
            stats=ctx.stats,
            secrets=[token],
        )
        await client.run()
