"""What the aggregator feeds (Finnhub, Tiingo) share: venue names, content-derived trade ids,
instruments that appear as venues do, their batches (no side, arrival order), and putting the
API token into the URL (the shared WebSocket helper keeps it out of its own messages:
`WsClient(secrets=...)`).

Kept here because only aggregators need it; it would move to `tickpipe/sources/aggregated.py`
once that shared module exists (the Tiingo connector imports it from here meanwhile).
"""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Iterable, Sequence

import numpy as np

from tickpipe.records import SIDE_UNKNOWN, Instrument, TradeBatch
from tickpipe.sources.parsing import trade_batch
from tickpipe.sources.ws import redact_secrets

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
