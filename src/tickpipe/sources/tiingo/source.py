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

from tickpipe.sources.feed import Shard, ShardedFeed, split
from tickpipe.sources.finnhub.aggregated import VenueInstruments
from tickpipe.sources.parsing import Parsed
from tickpipe.sources.tiingo.parse import SOURCE, parse_frames, tickers_for
from tickpipe.sources.ws import WsConfig, check_ws_url

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


class TiingoSource(ShardedFeed):
    """Trades of `symbols` (normalized, e.g. `BTC-USD`) from Tiingo's crypto firehose, each
    stamped with the venue it traded on (Tiingo's `gdax` becomes `coinbase`). No REST
    history: lost trades are neither counted nor refetched."""

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
        super().__init__(name, url, ws_config or TIINGO_WS_CONFIG)
        self.secrets = (token,)
        self.index = VenueInstruments(tickers_for(symbols))
        tickers = list(self.index.symbols)
        self.shard(tickers, split(tickers, max_tickers))
        self._token = token
        self._seq = 0  # arrival order: Tiingo gives no trade ids

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

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        parsed = parse_frames(frames, recv_ts, self.index, self._seq, self.name)
        self._seq += len(parsed.batch)
        return parsed
