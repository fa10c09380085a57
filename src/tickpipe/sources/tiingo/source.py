"""Tiingo crypto trades over its firehose WebSocket (`wss://api.tiingo.com/crypto`).

Each connection sends one subscribe message, `{"eventName":"subscribe","authorization":token,
"eventData":{"thresholdLevel":5,"tickers":[...]}}` (thresholdLevel 5: trades only), again after
every reconnect. Tiingo documents no ticker limit per subscription; tickpipe puts at most
`max_tickers` (100) on one connection and opens more beyond that, so one subscribe message stays
small. The token is one of the feed's secrets: the dead letters, and the connection helper's
log lines, Disconnect reasons and errors, show `***` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tickpipe.sources.aggregated import AggregatorFeed, VenueInstruments
from tickpipe.sources.feed import Shard, split
from tickpipe.sources.tiingo import INFO
from tickpipe.sources.tiingo.parse import SOURCE, parse_frames, tickers_for
from tickpipe.sources.ws import WsConfig

THRESHOLD_TRADES = 5  # "Trade Updates per-exchange" (2 would add top-of-book quotes)
MAX_TICKERS = 100


class TiingoSource(AggregatorFeed):
    """Trades of `symbols` (normalized, e.g. `BTC-USD`) from Tiingo's crypto firehose, each
    stamped with the venue it traded on (Tiingo's `gdax` becomes `coinbase`). No REST
    history: lost trades are neither counted nor refetched."""

    parse_frames = staticmethod(parse_frames)

    def __init__(
        self,
        symbols: Sequence[str],
        token: str | None,
        url: str = INFO.endpoints.url,
        name: str = SOURCE,
        ws_config: WsConfig | None = None,
        max_tickers: int = MAX_TICKERS,
    ) -> None:
        super().__init__(INFO, symbols, token, url, name, ws_config)
        if max_tickers < 1:
            raise ValueError(f"tiingo max_tickers must be positive, not {max_tickers}")
        self.index = VenueInstruments(tickers_for(symbols))
        tickers = list(self.index.symbols)
        self.shard(tickers, split(tickers, max_tickers))
        self._token = token

    @property
    def groups(self) -> list[list[str]]:
        """The tickers of each connection."""
        return [shard.symbols for shard in self.shards]

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

    def subscribe_messages(self, shard: Shard) -> list[bytes]:
        return [self.subscribe_message(shard.symbols)]
