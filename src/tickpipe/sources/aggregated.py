"""What the aggregator feeds (Finnhub, Tiingo) share: their base on the `ShardedFeed`
(`AggregatorFeed`: an API token kept secret, order keys by arrival, no REST history), venue
names, content-derived trade ids, instruments that appear as venues do, their batches (no
side), the shape of their classifiers, and putting the API token into the URL (the shared
WebSocket helper keeps it out of its own messages: `WsClient(secrets=...)`).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable, Container, Iterable, Sequence
from typing import Any

import msgspec
import numpy as np

from tickpipe.credentials import redact_secrets
from tickpipe.records import SIDE_UNKNOWN, Instrument, TradeBatch
from tickpipe.sources.feed import ShardedFeed
from tickpipe.sources.parsing import Parsed, json_object, trade_batch
from tickpipe.sources.registry import ExchangeInfo
from tickpipe.sources.ws import WsConfig, check_ws_url

# Venue spellings of the same exchange across feeds; the analytics of top exchanges group by it.
VENUE_ALIASES = {
    "gdax": "coinbase",
    "coinbasepro": "coinbase",
    "coinbaseexchange": "coinbase",
    "okex": "okx",
    "huobipro": "huobi",
}


def normalize_venue(name: str) -> str:
    """`BINANCE`, `Coinbase Pro`, `gdax` become `binance`, `coinbase`, `coinbase`."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    return VENUE_ALIASES.get(key, key)


def content_ids(keys: Sequence[tuple[object, ...]]) -> list[str]:
    """Trade ids for feeds that give none, derived from the trades of ONE message.

    Each key is (venue, raw symbol, ts µs, price, size) as received. The id hashes the key
    and how many identical keys came before it in the same message, so two identical trades in
    one message stay two trades, while a replay (or a duplicated delivery) of the message gives
    the same ids and the engine removes it. Identical trades in different messages get the same
    id: from content alone they cannot be told from a redelivery. blake2b, not `hash()`, so ids
    are stable across processes.
    """
    seen: dict[tuple[object, ...], int] = {}
    out: list[str] = []
    for key in keys:
        n = seen.get(key, 0)
        seen[key] = n + 1
        out.append(hashlib.blake2b(repr((key, n)).encode(), digest_size=10).hexdigest())
    return out


class VenueInstruments:
    """The instruments of an aggregator source, keyed by (venue as sent, raw symbol).

    Venues are learned from the messages, so the list grows; it is replaced rather than
    appended to, so a batch already handed out keeps the list its codes refer to.
    """

    def __init__(self, symbols: dict[str, str]) -> None:
        self.symbols = dict(symbols)  # raw symbol -> normalized symbol (the subscriptions)
        self.instruments: list[Instrument] = []
        self.codes: dict[tuple[str, str], int] = {}

    def code(self, venue: str, raw: str) -> int:
        """The code of (venue, raw); KeyError for a raw symbol that was not subscribed."""
        key = (venue, raw)
        code = self.codes.get(key)
        if code is None:
            instrument = Instrument(normalize_venue(venue), self.symbols[raw], raw)
            code = self.codes[key] = len(self.instruments)
            self.instruments = [*self.instruments, instrument]
        return code

    def add(self, instruments: Iterable[tuple[str, str]]) -> None:
        """Learn (venue, raw) pairs known in advance, in order."""
        for venue, raw in instruments:
            self.code(venue, raw)


def unsided_batch(
    source: str,
    instruments: list[Instrument],
    codes: Sequence[int],
    seq_start: int,
    prices: Sequence[float],
    sizes: Sequence[float],
    ts: Sequence[int],
    recv_ts: int,
    ids: Sequence[str],
) -> TradeBatch:
    """An aggregator's trades as a batch: no taker side (neither feed says who took
    liquidity), order keys by arrival from `seq_start`, content-derived ids."""
    n = len(prices)
    seq = np.arange(seq_start, seq_start + n, dtype=np.int64)
    side = np.full(n, SIDE_UNKNOWN, np.int8)
    trade_id = np.array(ids, object) if n else np.empty(0, object)
    return trade_batch(source, instruments, codes, seq, prices, sizes, side, ts, recv_ts, trade_id)


# Both send pings or heartbeats to open connections and we ping when idle too; a quiet pair
# can go minutes without a trade.
AGGREGATOR_WS_CONFIG = WsConfig(
    idle_timeout=60.0,
    data_timeout=300.0,
    ping_interval=20.0,
    ping_timeout=10.0,
)


class AggregatorFeed(ShardedFeed):
    """An aggregator's WebSocket feed: refused without its API token (which is never shown)
    or symbols; trades carry no ids, so order keys count arrivals; no REST history."""

    index: VenueInstruments  # set by the connector
    # The feed's parser: (frames, recv_ts, index, first order key, source) -> Parsed.
    parse_frames: Callable[[list[bytes], int, Any, int, str], Parsed]

    def __init__(
        self,
        info: ExchangeInfo,
        symbols: Sequence[str],
        token: str | None,
        url: str,
        name: str,
        ws_config: WsConfig | None,
    ) -> None:
        """`info`: the connector's `INFO`, whose name and token variable the refusals name."""
        if not token:
            raise ValueError(f"{info.name} needs an API token: set {info.token_env}")
        if not symbols:
            raise ValueError(f"{info.name} needs at least one symbol")
        check_ws_url(url, [token])
        super().__init__(name, url, ws_config or AGGREGATOR_WS_CONFIG)
        self.secrets = (token,)
        self._seq = 0

    def parse(self, frames: list[bytes], recv_ts: int) -> Parsed:
        parsed = self.parse_frames(frames, recv_ts, self.index, self._seq, self.name)
        self._seq += len(parsed.batch)
        return parsed


def classify_by_type(
    frame: bytes, error: msgspec.DecodeError, field: str, error_type: str, known: Container[str]
) -> str:
    """An aggregator's classifier: its messages name their kind in `field`; `error_type` is
    an error reply, a kind not `known` is unexpected, a known one that did not decode is a bad
    trade."""
    msg: Any = json_object(frame)
    if isinstance(msg, str):
        return msg
    kind = msg.get(field)
    if kind == error_type:
        return "error reply from exchange"
    if kind not in known:
        return f"unexpected message type {kind!r}"
    return f"bad trade: {error}"


def with_token(url: str, token: str, param: str = "token") -> str:
    """`url` with `?token=...` added (Finnhub authenticates in the URL)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query = [(k, v) for k, v in query if k != param] + [(param, token)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def redact(text: str, secret: str | None) -> str:
    """`text` with every spelling of `secret` (plain, URL-quoted) replaced by `***`: for what
    the source itself writes (dead letters, REST errors)."""
    return redact_secrets(text, [secret] if secret else [])
