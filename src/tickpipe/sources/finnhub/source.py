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

from tickpipe.sources.aggregated import AggregatorFeed, with_token
from tickpipe.sources.feed import Shard
from tickpipe.sources.finnhub import INFO
from tickpipe.sources.finnhub.parse import (
    DEFAULT_VENUES,
    SOURCE,
    FinnhubInstruments,
    parse_frames,
)
from tickpipe.sources.ws import WsConfig


class FinnhubSource(AggregatorFeed):
    """Trades of `symbols` (`binance:BTC-USDT`, `BINANCE:BTCUSDT`, or a bare pair subscribed on
    each of `venues`) from Finnhub, each stamped with the venue it traded on. No REST history:
    lost trades are neither counted nor refetched."""

    index: FinnhubInstruments
    parse_frames = staticmethod(parse_frames)

    def __init__(
        self,
        symbols: Sequence[str],
        token: str | None,
        url: str = INFO.endpoints.url,
        venues: Sequence[str] = DEFAULT_VENUES,
        name: str = SOURCE,
        ws_config: WsConfig | None = None,
    ) -> None:
        token_url = with_token(url, token) if token else url
        super().__init__(INFO, symbols, token, token_url, name, ws_config)
        self.index = FinnhubInstruments.for_symbols(symbols, venues)
        raw = list(self.index.by_raw)
        self.shard(raw, [list(range(len(raw)))])  # one connection per API key

    @property
    def subscriptions(self) -> list[str]:
        """Finnhub's spelling of every subscribed symbol (`BINANCE:BTCUSDT`)."""
        return list(self.index.by_raw)

    def __repr__(self) -> str:  # never the URL: it holds the token
        return f"FinnhubSource({self.subscriptions!r})"

    def subscribe_messages(self, shard: Shard) -> list[bytes]:
        return [msgspec.json.encode({"type": "subscribe", "symbol": raw}) for raw in shard.symbols]
