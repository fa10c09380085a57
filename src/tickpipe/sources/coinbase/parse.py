"""Coinbase trade messages to trade batches, on bytes alone (no connection needed).

Two feeds speak different shapes:

- Advanced Trade (`wss://advanced-trade-ws.coinbase.com`): every message names its `channel`;
  `market_trades` messages carry `events[]` of type `snapshot` (recent trades, sent once after
  subscribing) or `update`, each with `trades[]` (`trade_id` as a decimal string, `product_id`,
  `price`, `size`, `side`, `time`). `heartbeats` and `subscriptions` messages carry no trades.
- Exchange (`wss://ws-feed.exchange.coinbase.com`): every message names its `type`; `match` and
  `last_match` are trades (`trade_id` an integer), `heartbeat` carries the product's
  `last_trade_id`, `subscriptions` acknowledges a subscribe, `error` refuses one.

In both feeds and in the REST trade list, `side` is the side of the MAKER order (a `sell` maker
means the taker bought, an up-tick), so the taker side stored in tickpipe is the opposite.
Coinbase documents this for the Exchange feed and REST API; its Advanced Trade pages do not
define `side` for `market_trades`, and secondary sources disagree. tickpipe reads it the same
way as the Exchange feed, whose REST trades refill the Advanced feed's gaps under the same ids,
so a trade and its refilled copy always agree. This was not checked against live data (no
network here); if live data shows otherwise, TAKER_SIDE's Advanced entries are the one place
to change.

Trade ids are consecutive integers per product and the REST API paginates by them, so `seq` is
the id and `trade_id` is left to derive from it: the Advanced feed's string id and the REST
API's integer id then name a trade the same way and de-duplicate against each other.

The fast path decodes every frame with one msgspec decoder into small Structs and builds the
columns with comprehensions; only a batch in which something does not fit is walked again frame
by frame, so that only the bad frames are rejected.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Annotated, Any

import msgspec
import numpy as np

from tickpipe.records import SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN, TradeBatch
from tickpipe.sources import parsing
from tickpipe.sources.parsing import Parsed, Reject, Rejects, decoded, json_object, trade_batch

EXCHANGE = "coinbase"

_Id = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
_Positive = Annotated[float, msgspec.Meta(gt=0, le=sys.float_info.max)]  # NaN fails `gt`
_Time = Annotated[dt.datetime, msgspec.Meta(tz=True)]  # RFC 3339 with an offset (or Z)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)

# The maker's side -> the taker's side. Advanced Trade spells it in capitals, Exchange in lower.
TAKER_SIDE = {"BUY": SIDE_SELL, "SELL": SIDE_BUY, "buy": SIDE_SELL, "sell": SIDE_BUY}


class InstrumentIndex(parsing.InstrumentIndex):
    """The instruments of one Coinbase source and the code of each product id (`BTC-USD` -> 0)."""

    exchange = EXCHANGE  # product ids are already the normalized `BASE-QUOTE` form


def micros(time: dt.datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    return (time - _EPOCH) // _MICRO


# -- Advanced Trade ------------------------------------------------------------------------


class _AtTrade(msgspec.Struct, gc=False):
    trade_id: str
    product_id: str
    price: _Positive  # decimal strings; strict=False turns "0.001" into a float
    size: _Positive
    side: str
    time: _Time


class _AtEvent(msgspec.Struct, gc=False):
    # Heartbeat and subscription events decode to this too, with no trades.
    type: str = ""
    trades: list[_AtTrade] = []


class _AtMessage(msgspec.Struct, gc=False):
    channel: str = ""
    events: list[_AtEvent] = []


_at_decoder = msgspec.json.Decoder(_AtMessage, strict=False)
_AT_QUIET = frozenset(("heartbeats", "subscriptions"))  # no trades and nothing to act on


def parse_advanced(
    frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str = EXCHANGE
) -> Parsed:
    """Decode Advanced Trade frames into one batch; snapshot trades are kept like updates.

    `recv_ts` (integer microseconds) is stamped on every trade of the batch.
    """
    try:
        msgs = [_at_decoder.decode(f) for f in frames]
        data = 0
        for m in msgs:
            if m.channel == "market_trades":
                data += 1
            elif m.channel not in _AT_QUIET:
                raise LookupError(m.channel)
        trades = [t for m in msgs for e in m.events for t in e.trades]
        codes = [index.codes[t.product_id] for t in trades]
        ids = [int(t.trade_id) for t in trades]
        batch = _columns(trades, ids, codes, recv_ts, index, source)
    except (msgspec.DecodeError, LookupError, ValueError, OverflowError):
        return _advanced_slow(frames, recv_ts, index, source)
    return Parsed(batch, [], data, last_ids=[])


def _advanced_slow(
    frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str
) -> Parsed:
    trades: list[Any] = []
    ids: list[int] = []
    codes: list[int] = []
    rejects = Rejects()
    data = 0
    for frame, msg in decoded(frames, _at_decoder, _classify_advanced, rejects):
        if msg.channel in _AT_QUIET:
            continue
        if msg.channel != "market_trades":
            rejects.append(Reject(frame, _classify_advanced(frame, None)))
            continue
        found: list[tuple[Any, int, int]] = []
        reason = ""
        for trade in (t for e in msg.events for t in e.trades):
            code = index.codes.get(trade.product_id)
            if code is None:
                reason = f"unknown product {trade.product_id!r}"
                break
            trade_id = _int_id(trade.trade_id)
            if trade_id is None:
                reason = f"bad trade: trade_id {trade.trade_id!r} is not a trade number"
                break
            if trade.time < _EPOCH:
                reason = "bad trade: time before 1970"
                break
            found.append((trade, trade_id, code))
        if reason:
            rejects.append(Reject(frame, reason))
            continue
        data += 1
        for trade, trade_id, code in found:
            trades.append(trade)
            ids.append(trade_id)
            codes.append(code)
    return Parsed(_columns(trades, ids, codes, recv_ts, index, source), rejects, data, last_ids=[])


def _classify_advanced(frame: bytes, error: msgspec.DecodeError | None) -> str:
    msg = json_object(frame)
    if isinstance(msg, str):
        return msg
    if msg.get("type") == "error":
        return f"error reply from exchange: {msg.get('message', '')}".rstrip(": ")
    channel = msg.get("channel")
    if error is not None and channel in (None, "market_trades"):
        return f"bad trade: {error}"
    if error is not None:
        return f"bad message: {error}"
    return f"unexpected channel {channel!r}" if channel else "no channel"


# -- Exchange ------------------------------------------------------------------------------


class _Match(msgspec.Struct, gc=False, tag_field="type", tag="match"):
    trade_id: _Id
    product_id: str
    price: _Positive
    size: _Positive
    side: str
    time: _Time


class _LastMatch(_Match, gc=False, tag="last_match"):
    """The product's latest trade, sent once after subscribing: a real trade like any other."""


class _Heartbeat(msgspec.Struct, gc=False, tag_field="type", tag="heartbeat"):
    product_id: str
    last_trade_id: _Id


class _Subscriptions(msgspec.Struct, gc=False, tag_field="type", tag="subscriptions"):
    pass


_ex_decoder = msgspec.json.Decoder(_Match | _LastMatch | _Heartbeat | _Subscriptions, strict=False)


def parse_exchange(
    frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str = EXCHANGE
) -> Parsed:
    """Decode Exchange-feed frames: `match`/`last_match` become trades, `heartbeat`s give each
    product's last trade id (so a quiet product's lost trades are noticed too)."""
    try:
        msgs = [_ex_decoder.decode(f) for f in frames]
        trades = [m for m in msgs if type(m) is _Match or type(m) is _LastMatch]
        codes = [index.codes[t.product_id] for t in trades]
        beats = [m for m in msgs if type(m) is _Heartbeat]
        last_ids = [(index.codes[h.product_id], h.last_trade_id) for h in beats]
        batch = _columns(trades, [t.trade_id for t in trades], codes, recv_ts, index, source)
    except (msgspec.DecodeError, KeyError, OverflowError):
        return _exchange_slow(frames, recv_ts, index, source)
    return Parsed(batch, [], len(trades), last_ids=last_ids)


def _exchange_slow(
    frames: list[bytes], recv_ts: int, index: InstrumentIndex, source: str
) -> Parsed:
    trades: list[Any] = []
    codes: list[int] = []
    last_ids: list[tuple[int, int]] = []
    rejects = Rejects()
    for frame, msg in decoded(frames, _ex_decoder, _classify_exchange, rejects):
        if type(msg) is _Subscriptions:
            continue
        code = index.codes.get(msg.product_id)
        if code is None:
            rejects.append(Reject(frame, f"unknown product {msg.product_id!r}"))
        elif type(msg) is _Heartbeat:
            last_ids.append((code, msg.last_trade_id))
        elif msg.time < _EPOCH:
            rejects.append(Reject(frame, "bad trade: time before 1970"))
        else:
            trades.append(msg)
            codes.append(code)
    batch = _columns(trades, [t.trade_id for t in trades], codes, recv_ts, index, source)
    return Parsed(batch, rejects, len(trades), last_ids=last_ids)


def _classify_exchange(frame: bytes, error: msgspec.DecodeError) -> str:
    """Why a frame is not a usable message: '' for known messages tickpipe does not need."""
    msg = json_object(frame)
    if isinstance(msg, str):
        return msg
    kind = msg.get("type")
    if kind == "error":
        detail = " ".join(str(msg.get(k, "")) for k in ("message", "reason")).strip()
        return f"error reply from exchange: {detail}".rstrip(": ")
    if kind in ("match", "last_match"):
        return f"bad trade: {error}"
    if kind in ("heartbeat",):
        return f"bad heartbeat: {error}"
    return f"unexpected message type {kind!r}" if kind else "no message type"


# -- shared ----------------------------------------------------------------------------------


def _int_id(text: str) -> int | None:
    try:
        value = int(text)
    except ValueError:
        return None
    return value if 0 <= value <= 2**63 - 1 else None


def _columns(
    trades: list[Any],
    ids: list[int],
    codes: list[int],
    recv_ts: int,
    index: InstrumentIndex,
    source: str,
) -> TradeBatch:
    """Columns of trades that have `price`, `size`, `side` (the maker's) and `time`.

    OverflowError when a time is before 1970 (the fast path then falls back to the slow one).
    """
    n = len(trades)
    ts = np.fromiter([(t.time - _EPOCH) // _MICRO for t in trades], np.int64, n)
    if n and ts.min() < 0:
        raise OverflowError("time before the epoch")
    side = np.fromiter([TAKER_SIDE.get(t.side, SIDE_UNKNOWN) for t in trades], np.int8, n)
    prices, sizes = [t.price for t in trades], [t.size for t in trades]
    return trade_batch(source, index.instruments, codes, ids, prices, sizes, side, ts, recv_ts)


# -- REST ------------------------------------------------------------------------------------


class RestTrade(msgspec.Struct, gc=False):
    """One entry of `GET /products/{product_id}/trades` (newest first; `side` is the maker's)."""

    trade_id: _Id
    price: _Positive
    size: _Positive
    side: str
    time: _Time


def rest_trades(payload: Any) -> list[RestTrade]:
    """The trades of a REST trade page (already JSON-decoded); ValidationError when malformed."""
    return msgspec.convert(payload, list[RestTrade], strict=False)


def rest_batch(
    trades: list[RestTrade], code: int, recv_ts: int, index: InstrumentIndex, source: str
) -> TradeBatch:
    """Backfilled trades of one product as a batch that looks like a live one."""
    ids = [t.trade_id for t in trades]
    return _columns(trades, ids, [code] * len(trades), recv_ts, index, source)
