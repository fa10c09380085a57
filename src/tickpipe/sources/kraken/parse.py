"""Kraken spot WebSocket v2 trade frames (and REST `Trades` pages) to trade batches, on bytes.

The v2 feed is JSON objects: `{"channel": "trade", "type": "snapshot" | "update", "data": [...]}`
with one object per trade (`symbol`, `side` = the taker side, `price` and `qty` as JSON numbers,
`ord_type`, `trade_id` = a sequence number per book, `timestamp` in RFC 3339), plus the
`heartbeat` and `status` channels and method replies (`subscribe` acks, `pong`). The fast path
decodes every frame with one msgspec decoder; a batch where anything does not fit is walked
again frame by frame so that only the bad frames are rejected.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, Instrument, TradeBatch
from tickpipe.sources import parsing
from tickpipe.sources.parsing import Parsed, Reject, Rejects, decoded, json_object, trade_batch
from tickpipe.symbols import ALIASES, normalize_symbol

EXCHANGE = "kraken"

_Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # NaN fails `gt`
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
_LEGACY = {name: alias for alias, name in ALIASES.items()}  # BTC -> XBT, DOGE -> XDG


class _Trade(msgspec.Struct, gc=False):
    symbol: str
    side: Literal["buy", "sell"]  # the taker's side, per Kraken's v2 docs
    price: _Positive
    qty: _Positive
    trade_id: _Id
    timestamp: dt.datetime  # RFC 3339; msgspec rejects what is not one


class _TradeMessage(msgspec.Struct, gc=False, tag_field="channel", tag="trade"):
    type: Literal["snapshot", "update"]
    data: list[_Trade]


class _Heartbeat(msgspec.Struct, gc=False, tag_field="channel", tag="heartbeat"):
    pass


class _Status(msgspec.Struct, gc=False, tag_field="channel", tag="status"):
    pass  # engine status on connect and on change; its data is not needed here


_decoder = msgspec.json.Decoder(_TradeMessage | _Heartbeat | _Status)


def to_kraken(symbol: str) -> str:
    """`BTC-USD` (or `XBT/USD`, `xbtusd`) becomes Kraken v2's `BTC/USD`."""
    return normalize_symbol(symbol).replace("-", "/")


def to_kraken_rest(symbol: str) -> str:
    """`BTC-USD` becomes the REST altname `XBTUSD` (REST keeps the legacy asset codes)."""
    base, quote = normalize_symbol(symbol).split("-")
    return _LEGACY.get(base, base) + _LEGACY.get(quote, quote)


class InstrumentIndex(parsing.InstrumentIndex):
    """The instruments of one Kraken source and the code of each raw symbol (`BTC/USD` -> 0).

    Legacy spellings (`XBT/USD`) map to the same code, so a feed that used them still parses.
    """

    def __init__(self, instruments: Iterable[Instrument]) -> None:
        super().__init__(instruments)
        for n, inst in enumerate(self.instruments):
            base, quote = inst.symbol.split("-")
            self.codes.setdefault(f"{_LEGACY.get(base, base)}/{_LEGACY.get(quote, quote)}", n)

    exchange = EXCHANGE
    spell = staticmethod(to_kraken)  # `BTC-USD` -> `BTC/USD`


def parse_frames(
    frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str = EXCHANGE
) -> Parsed:
    """Decode v2 frames into one batch; frames that are not trades are returned as rejects,
    except heartbeats, status updates, subscription acks and pongs, which are dropped.

    `recv_ts` (integer microseconds) is stamped on every trade of the batch.
    """
    try:
        trades = [
            t for m in map(_decoder.decode, frames) if type(m) is _TradeMessage for t in m.data
        ]
        codes = [index.codes[t.symbol] for t in trades]
        ts = [(t.timestamp - _EPOCH) // _MICROSECOND for t in trades]  # TypeError if naive
    except (msgspec.DecodeError, KeyError, TypeError):
        return _parse_slow(frames, recv_ts, index, source)
    return Parsed(_columns(trades, codes, ts, recv_ts, index, source), [])


def _columns(
    trades: Sequence[_Trade],
    codes: list[int],
    ts: list[int],
    recv_ts: int,
    index: InstrumentIndex,
    source: str,
) -> TradeBatch:
    n = len(trades)
    side = np.fromiter([SIDE_BUY if t.side == "buy" else SIDE_SELL for t in trades], np.int8, n)
    ids, prices = [t.trade_id for t in trades], [t.price for t in trades]
    sizes = [t.qty for t in trades]
    return trade_batch(source, index.instruments, codes, ids, prices, sizes, side, ts, recv_ts)


def _parse_slow(frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str) -> Parsed:
    trades: list[_Trade] = []
    codes: list[int] = []
    ts: list[int] = []
    rejects = Rejects()
    for frame, message in decoded(frames, _decoder, _classify, rejects):
        if type(message) is not _TradeMessage:
            continue
        # A frame is all or nothing: one bad trade in it rejects the frame, so a reject in the
        # dead-letter file never hides trades that were also delivered.
        found: list[tuple[_Trade, int, int]] = []
        reason = ""
        for trade in message.data:
            code = index.codes.get(trade.symbol)
            if code is None:
                reason = f"unknown symbol {trade.symbol!r}"
                break
            if trade.timestamp.tzinfo is None:
                reason = "bad trade: timestamp without a time zone"
                break
            found.append((trade, code, (trade.timestamp - _EPOCH) // _MICROSECOND))
        if reason:
            rejects.append(Reject(frame, reason))
            continue
        for trade, code, micros in found:
            trades.append(trade)
            codes.append(code)
            ts.append(micros)
    return Parsed(_columns(trades, codes, ts, recv_ts, index, source), rejects)


def _classify(frame: bytes, error: msgspec.DecodeError) -> str:
    """Why a frame is not a trade message: '' for replies that need no action."""
    msg: Any = json_object(frame)
    if isinstance(msg, str):
        return msg
    method = msg.get("method")
    if method is not None:
        if msg.get("success") is False or "error" in msg:
            return f"error reply to {method}: {msg.get('error', 'no reason given')}"
        if method in ("subscribe", "unsubscribe", "pong"):
            return ""  # acks of our own requests
        return f"unexpected reply {method!r}"
    if "error" in msg:
        return f"error from exchange: {msg['error']}"
    channel = msg.get("channel")
    if channel in ("trade", "heartbeat", "status"):
        return f"bad {channel} message: {error}"
    return f"unexpected channel {channel!r}"


class _RestTrades(msgspec.Struct, gc=False):
    error: list[str] = []
    result: dict[str, Any] = {}


_RestEntry = tuple[str, str, float, Literal["b", "s"], str, str, _Id]


class RestPage(NamedTuple):
    """One answer of `GET /0/public/Trades`: its trades (oldest first) and the next cursor."""

    trades: list[tuple[int, float, float, int, int]]  # (trade_id, price, size, side, ts µs)
    last: int | None  # `last` cursor (nanoseconds) to pass as `since` for the next page
    error: str  # Kraken's error list joined, '' when none


def parse_rest_trades(answer: Any) -> RestPage:
    """Read a decoded `Trades` answer: `{"error": [], "result": {PAIR: [[price, volume, time,
    side, ord_type, misc, trade_id], ...], "last": "<ns>"}}`. Entries that do not fit raise
    ValueError, since a backfill built on a misread page would store wrong trades."""
    body = msgspec.convert(answer, _RestTrades)
    if body.error:
        return RestPage([], None, "; ".join(body.error))
    last_raw = body.result.get("last")
    last = int(last_raw) if last_raw is not None else None
    rows = [v for k, v in body.result.items() if k != "last" and isinstance(v, list)]
    if len(rows) != 1:
        raise ValueError(f"expected one pair in the Trades answer, found {len(rows)}")
    trades = []
    for entry in rows[0]:
        try:
            price_s, volume_s, seconds, side, _ord, _misc, trade_id = msgspec.convert(
                entry, _RestEntry, strict=False
            )
            price, size = float(price_s), float(volume_s)
        except (msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"bad trade entry {entry!r}: {exc}") from None
        if not (price > 0 and size > 0):
            raise ValueError(f"bad trade entry {entry!r}: price and volume must be positive")
        trades.append(
            (
                trade_id,
                price,
                size,
                SIDE_BUY if side == "b" else SIDE_SELL,
                round(seconds * 1_000_000),
            )
        )
    return RestPage(trades, last, "")
