"""Finnhub crypto trades over its WebSocket (`wss://ws.finnhub.io?token=...`).

Finnhub authenticates in the URL and allows one open connection per API key, so every symbol
goes over one connection (a second one would compete with the first for the same key); each
symbol is one `{"type":"subscribe","symbol":"BINANCE:BTCUSDT"}` message, sent again after every
reconnect. The token is one of the feed's secrets: the dead letters, and the connection
helper's log lines, Disconnect reasons and errors, show `***` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tickpipe.sources.feed import Shard, ShardedFeed
from tickpipe.sources.finnhub.aggregated import with_token
from tickpipe.sources.finnhub.parse import (
    DEFAULT_VENUES,
    SOURCE,
    FinnhubInstruments,
    parse_frames,
)
from tickpipe.sources.parsing import Parsed
from tickpipe.sources.ws import WsConfig, check_ws_url

DEFAULT_URL = "wss://ws.finnhub.io"

# Finnhub sends {"type":"ping"} to idle connections; a quiet pair can go minutes without trades.
FINNHUB_WS_CONFIG = WsConfig(
    idle_timeout=60.0,
    data_timeout=300.0,
    ping_interval=20.0,
    ping_timeout=10.0,
)


class FinnhubSource(ShardedFeed):
    """Trades of `symbols` (`binance:BTC-USDT`, `BINANCE:BTCUSDT`, or a bare pair subscribed on
    each of `venues`) from Finnhub, each stamped with the venue it traded on. No REST history:
    lost trades are neither counted nor refetched."""

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
        token_url = with_token(url, token)
        check_ws_url(token_url, [token])
        super().__init__(name, token_url, ws_config or FINNHUB_WS_CONFIG)
        self.secrets = (token,)
        self.index = FinnhubInstruments.for_symbols(symbols, venues)
        raw = list(self.index.by_raw)
        self.shard(raw, [list(range(len(raw)))])  # one connection per API key
        self._seq = 0  # arrival order: Finnhub gives no trade ids

    @property
    def subscriptions(self) -> list[str]:
        """Finnhub's spelling of every subscribed symbol (`BINANCE:BTCUSDT`)."""
        return list(self.index.by_raw)

    def __repr__(self) -> str:  # never the URL: it holds the token
        return f"FinnhubSource({self.subscriptions!r})"

    def subscribe_messages(self, shard: Shard) -> list[bytes]:
        return [msgspec.json.encode({"type": "subscribe", "symbol": raw}) for raw in shard.symbols]

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        parsed = parse_frames(frames, recv_ts, self.index, self._seq, self.name)
        self._seq += len(parsed.batch)
        return parsed
